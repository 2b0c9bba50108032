"""Where the --decode gpu ceiling is: nvJPEG (torchvision.io.decode_jpeg on CUDA) alone, no workers, no model.

    python scripts/nvjpeg_probe.py [N]    (N generated 500×375 JPEGs, default 1024)
"""

import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from pipelines.devtools.bench import write_photo_like_jpegs


def rate(label: str, count: int, run) -> None:
    run()  # warm-up: nvJPEG handles, allocator
    torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    torch.cuda.synchronize()
    print(f"{label:<34} {count / (time.perf_counter() - started):8.0f} img/s", flush=True)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory() as tmp:
        write_photo_like_jpegs(Path(tmp), count, processes=8)
        data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in sorted(Path(tmp).glob("*.jpg"))]
    batches = [data[i:i + 128] for i in range(0, count, 128)]
    rate("batched (128 per call)", count, lambda: [decode_jpeg(b, mode=ImageReadMode.RGB, device="cuda") for b in batches])
    rate("one image per call", count, lambda: [decode_jpeg(d, mode=ImageReadMode.RGB, device="cuda") for d in data])
    rate("cpu decode_jpeg (1 thread)", count, lambda: decode_jpeg(data, mode=ImageReadMode.RGB))
    for threads in (2, 4):
        def run(threads=threads):
            def work(part):
                with torch.cuda.stream(torch.cuda.Stream()):
                    for b in part:
                        decode_jpeg(b, mode=ImageReadMode.RGB, device="cuda")
            pool = [threading.Thread(target=work, args=(batches[i::threads],)) for i in range(threads)]
            [t.start() for t in pool]
            [t.join() for t in pool]
        rate(f"batched, {threads} threads", count, run)


if __name__ == "__main__":
    main()
