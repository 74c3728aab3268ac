"""int8 ONNX Runtime trial: quantize every convolution of an exported model statically
(QDQ, per-channel int8 weights, uint8 activations calibrated on 8 rendered crops), then
compare PSNR on a validation set and time one 1280 x 720 photo against the float model,
alternating three times in one process:

    nrkdeblur export -o ship.onnx
    python scripts/int8-trial.py ship.onnx CALIBRATION_SET benchmarks/kodak24-defocus

CALIBRATION_SET: a folder with blur/, rendered from training photos (`nrkdeblur render`).
THREADS (environment) sets ONNX Runtime's threads (default 2).
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255


class Crops(CalibrationDataReader):
    def __init__(self, folder: Path):
        self.items = iter({"input": np.ascontiguousarray(load(p)[..., :256, :256])}
                          for p in sorted((folder / "blur").iterdir())[:8])

    def get_next(self):
        return next(self.items, None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def main(model: Path, calibration: Path, val: Path) -> None:
    pre, int8 = model.with_suffix(".pre.onnx"), model.with_suffix(".int8.onnx")
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(int8), Crops(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("THREADS", "2"))
    runs = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (("fp32", model), ("int8", int8))}
    scores = []
    for path in sorted((val / "blur").iterdir()):
        x, y = load(path), load(val / "sharp" / path.name)
        scores.append([psnr(r.run(["image"], {"input": x})[0], y) for r in runs.values()])
    loss = np.diff(np.array(scores), axis=1)[:, 0]
    print(f"int8 - fp32 PSNR: mean {loss.mean():+.3f} dB, worst {loss.min():+.3f} dB ({len(loss)} images)")
    x = np.ascontiguousarray(np.tile(x, (1, 1, 2, 2))[..., :720, :1280])
    for _ in range(3):
        for name, r in runs.items():
            t = time.perf_counter()
            r.run(["image"], {"input": x})
            print(f"{name} 1280 x 720: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
