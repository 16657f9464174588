"""ArcFace recogniser: aligned 112x112 RGB crops to L2-normalised embeddings."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from faceledger.errors import InvalidArgument, ModelError
from faceledger.types import FloatArray, UInt8Image


class ArcFaceEmbedder:
    """Runs an ArcFace-style ONNX recogniser (one square input, one embedding output)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        inp = session.get_inputs()[0]
        self._input_name = inp.name
        self.input_size = int(inp.shape[2])
        self.dim = int(session.get_outputs()[0].shape[-1])
        self._output_name = session.get_outputs()[0].name

    @staticmethod
    def accepts(session: ort.InferenceSession) -> bool:
        """True for one square image input of 112 (or 128) pixels and one vector output."""
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            return False
        shape = inputs[0].shape
        return len(shape) == 4 and shape[2] == shape[3] and shape[2] in (112, 128)

    def embed(self, crops: UInt8Image) -> FloatArray:
        """Embed ``crops (n, s, s, 3)`` uint8 RGB; returns ``(n, dim)`` float32, L2-normalised."""
        size = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise InvalidArgument(
                f"aligned crops must be (n, {size}, {size}, 3), got {crops.shape}"
            )
        if crops.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        blob = crops.astype(np.float32).transpose(0, 3, 1, 2)
        blob -= 127.5
        blob *= 1.0 / 127.5
        try:
            (out,) = self._session.run([self._output_name], {self._input_name: blob})
        except Exception as exc:
            raise ModelError(f"recogniser failed: {exc}") from exc
        emb = np.asarray(out, dtype=np.float32).reshape(crops.shape[0], -1)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return np.ascontiguousarray(emb / np.maximum(norms, 1e-12), dtype=np.float32)
