"""Face detection (batched MTCNN) and 2D similarity alignment for the `align` stage."""
