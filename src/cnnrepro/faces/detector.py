"""Batched MTCNN face detection with the P-, R- and O-net weights that ship in facenet-pytorch.

The cascade follows Zhang et al. 2016 (MTCNN) as facenet-pytorch 2.6.0 implements it: an image pyramid through
PNet, NMS 0.5 per scale and 0.7 per image, RNet on 24x24 crops, ONet on 48x48 crops with five landmarks, and a
final 'Min' NMS at 0.7. This module runs that cascade on a whole batch of equal-size images and differs from
facenet-pytorch's `detect_face` where it matters for speed and correctness:

- the R/O-net crops are cut and resized for all boxes of the batch in one `roi_align` call, averaging 2 x 2
  bilinear samples per output pixel where facenet-pytorch applies an 'area' resize crop by crop. On 96 LFW
  images the top face's landmarks then differ from facenet-pytorch's by a median of 1 pixel;
- the nets run in channels-last layout, which is faster on CPUs, and on fixed shapes, so that an image's
  result is bitwise the same whatever batch it came in;
- degenerate boxes are removed together with their scores (facenet-pytorch drops only the crop);
- an image without faces yields empty arrays, never None, so a batch mixing faces and no faces works.

Boxes and landmarks are in the input's pixel coordinates, as facenet-pytorch returns them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import interpolate
from torchvision.ops import batched_nms, roi_align

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detections:
    """The faces found in one image, sorted by descending score."""

    boxes: np.ndarray  # (n, 4) float32: x1, y1, x2, y2
    scores: np.ndarray  # (n,) float32
    landmarks: np.ndarray  # (n, 5, 2) float32: left eye, right eye, nose, left and right mouth corner (x, y)

    def __len__(self) -> int:
        return len(self.scores)


def resolve_device(name: str) -> torch.device:
    """Map `auto` to CUDA when available, else CPU; pass `cpu` and `cuda[:n]` through."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load_nets(device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    # Imported here so that modules which only read reports do not need facenet-pytorch.
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    nets = []
    for cls in (PNet, RNet, ONet):
        net = cls(pretrained=True).eval().to(device=device, memory_format=torch.channels_last)
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        nets.append(net)
    return nets[0], nets[1], nets[2]


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS where overlap is intersection over the smaller box (MTCNN's final 'Min' step)."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        overlap = w * h / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (MTCNN's `rerec`)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool = True) -> torch.Tensor:
    """Apply the nets' box regression, whose offsets are in units of box width and height.

    PNet's offsets scale with x2 - x1, R- and O-net's with x2 - x1 + 1 (inclusive pixel counts), as in
    facenet-pytorch 2.6.0.
    """
    extra = 1 if inclusive else 0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out = boxes.clone()
    out[:, 0] = boxes[:, 0] + offsets[:, 0] * w
    out[:, 1] = boxes[:, 1] + offsets[:, 1] * h
    out[:, 2] = boxes[:, 2] + offsets[:, 2] * w
    out[:, 3] = boxes[:, 3] + offsets[:, 3] * h
    return out


class BatchMTCNN:
    """MTCNN on batches of equal-size RGB images (uint8 tensors, N x H x W x 3)."""

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str | torch.device = "cpu",
        chunk: int = 64,
        sampling_ratio: int = 2,
    ) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.chunk = chunk
        self.sampling_ratio = sampling_ratio
        self.pnet, self.rnet, self.onet = _load_nets(self.device)

    def _run_chunked(self, net: torch.nn.Module, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run a net on exactly `chunk` crops at a time, zero-padding the last chunk.

        Convolution kernels may pick a different algorithm, and so round differently, for another batch
        shape. A fixed shape keeps each crop's result independent of how many crops the batch had.
        """
        count = len(crops)
        padded = -count % self.chunk
        if padded:
            filler = crops.new_zeros((padded, *crops.shape[1:])).contiguous(memory_format=torch.channels_last)
            crops = torch.cat([crops, filler]).contiguous(memory_format=torch.channels_last)
        outputs = [net(crops[i : i + self.chunk]) for i in range(0, len(crops), self.chunk)]
        return tuple(torch.cat(parts, dim=0)[:count] for parts in zip(*outputs, strict=True))

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.factor
            side *= self.factor
        return scales

    def _crops(
        self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor, size: int, sampling_ratio: int
    ):
        """Cut boxes (corners truncated to whole pixels) and resize them to size x size.

        Parts of a box outside the image read as zeros, as in the original MTCNN, so a face cut by the image
        border keeps its proportions (facenet-pytorch clips the box to the image and stretches the crop).
        """
        box = boxes[:, :4].trunc()
        valid = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
        # Pixel x covers [x - 1, x) in these 1-based inclusive corners; roi_align wants edge coordinates.
        rois = torch.stack([image_index.to(images.dtype), box[:, 0] - 1, box[:, 1] - 1, box[:, 2], box[:, 3]], dim=1)
        rois = rois[valid]
        crops = roi_align(
            images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=True
        )
        crops = (crops - 127.5) * 0.0078125
        return crops.contiguous(memory_format=torch.channels_last), valid

    @torch.inference_mode()
    def detect(self, images: torch.Tensor) -> list[Detections]:
        """Detect faces in a uint8 batch of shape (N, H, W, 3); return one `Detections` per image."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected a batch of RGB images shaped (N, H, W, 3), got {tuple(images.shape)}")
        count = images.shape[0]
        # NCHW: the pyramid resize and roi_align are faster on it than on channels-last (measured on CPU).
        images = images.to(self.device).permute(0, 3, 1, 2).float().contiguous()
        height, width = images.shape[2:]

        # Stage 1: PNet over the image pyramid.
        boxes_per_scale = []
        for scale in self._scales(height, width):
            resized = interpolate(images, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            resized = ((resized - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)
            # One image at a time, for the same reason as in _run_chunked: the result must not depend on
            # the batch size. On one CPU thread PNet took about as long per image alone as in batches of 32.
            outputs = [self.pnet(resized[i : i + 1]) for i in range(count)]
            offsets = torch.cat([o for o, _ in outputs])
            probs = torch.cat([p for _, p in outputs])
            boxes_per_scale.append(self._pnet_boxes(offsets, probs[:, 1], scale))
        boxes = torch.cat([b for b, _ in boxes_per_scale])
        image_index = torch.cat([i for _, i in boxes_per_scale])
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
        boxes, image_index = boxes[keep], image_index[keep]
        boxes = _square(torch.cat([_regress(boxes[:, :4], boxes[:, 5:9], inclusive=False), boxes[:, 4:5]], dim=1))

        # Stage 2: RNet refines and rejects candidates.
        if len(boxes):
            crops, valid = self._crops(images, boxes, image_index, 24, sampling_ratio=self.sampling_ratio)
            boxes, image_index = boxes[valid], image_index[valid]
            offsets, probs = self._run_chunked(self.rnet, crops)
            passed = probs[:, 1] > self.thresholds[1]
            boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
            image_index, offsets = image_index[passed], offsets[passed]
            keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
            boxes, image_index, offsets = boxes[keep], image_index[keep], offsets[keep]
            boxes = _square(torch.cat([_regress(boxes[:, :4], offsets), boxes[:, 4:5]], dim=1))

        # Stage 3: ONet gives the final boxes and the five landmarks.
        points = torch.zeros(0, 5, 2, device=self.device)
        if len(boxes):
            crops, valid = self._crops(images, boxes, image_index, 48, sampling_ratio=self.sampling_ratio)
            boxes, image_index = boxes[valid], image_index[valid]
            offsets, marks, probs = self._run_chunked(self.onet, crops)
            passed = probs[:, 1] > self.thresholds[2]
            boxes = torch.cat([boxes[passed, :4], probs[passed, 1:2]], dim=1)
            image_index, offsets, marks = image_index[passed], offsets[passed], marks[passed]
            box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            xs = box_w * marks[:, :5] + boxes[:, 0:1] - 1
            ys = box_h * marks[:, 5:] + boxes[:, 1:2] - 1
            points = torch.stack([xs, ys], dim=2)
            boxes = torch.cat([_regress(boxes[:, :4], offsets), boxes[:, 4:5]], dim=1)

        return self._split(boxes.cpu().numpy(), points.cpu().numpy(), image_index.cpu().numpy(), count)

    def _pnet_boxes(self, offsets: torch.Tensor, probs: torch.Tensor, scale: float):
        """Turn PNet's score map into candidate boxes (x1, y1, x2, y2, score, 4 offsets) and apply NMS 0.5."""
        stride, cell = 2, 12
        mask = probs >= self.thresholds[0]
        where = mask.nonzero()
        image_index = where[:, 0]
        scores = probs[mask]
        offsets = offsets.permute(1, 0, 2, 3)[:, mask].permute(1, 0)
        corner = where[:, 1:].to(offsets.dtype).flip(1)
        top_left = ((stride * corner + 1) / scale).floor()
        bottom_right = ((stride * corner + cell) / scale).floor()
        boxes = torch.cat([top_left, bottom_right, scores[:, None], offsets], dim=1)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.5)
        return boxes[keep], image_index[keep]

    @staticmethod
    def _split(boxes: np.ndarray, points: np.ndarray, image_index: np.ndarray, count: int) -> list[Detections]:
        results = []
        for i in range(count):
            mine = np.flatnonzero(image_index == i)
            b, p = boxes[mine], points[mine]
            if len(mine):
                keep = _nms_min(b[:, :4], b[:, 4], 0.7)
                b, p = b[keep], p[keep]
            results.append(
                Detections(
                    boxes=b[:, :4].astype(np.float32).reshape(-1, 4),
                    scores=b[:, 4].astype(np.float32).reshape(-1),
                    landmarks=p.astype(np.float32).reshape(-1, 5, 2),
                )
            )
        return results
