"""Dataset readers and the download stage's library code.

Readers (`mnist`, `imagenet`, `lfw`, `identity`) read the folders that the download stage writes under
`data/raw/<dataset>`; `images.load_rgb` decodes one image file for any of them.
"""
