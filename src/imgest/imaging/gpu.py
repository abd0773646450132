"""JPEG decoding on a CUDA GPU with NVIDIA nvImageCodec, for `imgest rescore --decode cuda`.

UNTESTED ON A GPU: no GPU was available while this was written. Only the refusal without one
(DeviceUnavailable, exit code 2) and the plumbing (with a stand-in decoder) are tested.
nvImageCodec (`pip install nvidia-nvimgcodec-cu12`) is imported only when a decoder is built,
so nothing here loads CUDA otherwise. Which originals go to the GPU: baseline/progressive JPEGs
without an embedded ICC profile (nvImageCodec does no colour management); the rest, and any
the GPU decoder rejects, are decoded on the CPU as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from imgest.errors import DeviceUnavailable

INSTALL = "pip install nvidia-nvimgcodec-cu12"


class GpuJpegDecoder:
    """Decodes batches of JPEGs to full-size, upright RGB on the GPU (nvImageCodec)."""

    def __init__(self, device_id: int = 0) -> None:
        try:
            from nvidia import nvimgcodec  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise DeviceUnavailable(
                f"--decode cuda needs nvImageCodec and a CUDA GPU, and nvImageCodec is not "
                f"installed here ({INSTALL}); use --decode cpu."
            ) from None
        try:
            self._decoder: Any = nvimgcodec.Decoder(device_id=device_id)
            self._params: Any = nvimgcodec.DecodeParams(
                apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.RGB
            )
        except Exception as exc:  # no driver, no device: nvImageCodec's own RuntimeErrors
            raise DeviceUnavailable(
                f"--decode cuda: nvImageCodec found no usable CUDA GPU ({exc}); use --decode cpu."
            ) from None

    def decode(self, blobs: Sequence[bytes]) -> list[Image.Image | None]:
        """Each blob's pixels (None where the GPU decoder could not decode it)."""
        if not blobs:
            return []
        images = self._decoder.decode(list(blobs), params=self._params)
        out: list[Image.Image | None] = []
        for image in images:
            if image is None:
                out.append(None)
                continue
            pixels = np.asarray(image.cpu())
            ok = pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
            out.append(Image.fromarray(np.ascontiguousarray(pixels)) if ok else None)
        return out


def gpu_decodable(data: bytes) -> bool:
    """Whether a JPEG's pixels come out right from nvImageCodec: no embedded ICC profile."""
    return data[:2] == b"\xff\xd8" and b"ICC_PROFILE\x00" not in data[:262144]
