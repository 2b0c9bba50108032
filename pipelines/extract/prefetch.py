"""Keeping the device busy: the DataLoader extract uses, submit-ahead pipelining, and a side-stream
prefetch thread that moves batches onto the GPU ahead of the forward passes."""

from __future__ import annotations

from typing import Callable, Iterator

import torch


def loader(dataset, workers: int, device: torch.device, **options) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, **options,
    )


def pipelined(batches, submit, finish) -> Iterator:
    """Submit batch k+1 to the device before waiting for batch k's results: the GPU never waits
    for the next batch to be fetched, and the loader never waits for the GPU."""
    previous = None
    for batch in batches:
        current = (batch, submit(batch))
        if previous is not None:
            yield finish(*previous)
        previous = current
    if previous is not None:
        yield finish(*previous)


class DevicePrefetch:
    """Fetch batches and move them onto the GPU (copy, --decode gpu) in a thread on a side CUDA
    stream, `depth` batches ahead: transfers and nvJPEG overlap the forward passes of the main stream."""

    _done = object()

    def __init__(self, batches, prepare: Callable, device: torch.device, depth: int = 2):
        self.batches, self.prepare, self.device, self.depth = batches, prepare, device, depth

    def __iter__(self):
        import queue
        import threading

        ready: queue.Queue = queue.Queue(self.depth)
        stop = threading.Event()
        side = torch.cuda.Stream(self.device)

        def hand_over(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                if self.device.index is not None:  # a new thread starts on cuda:0
                    torch.cuda.set_device(self.device)
                with torch.cuda.stream(side):  # the current stream is per thread
                    for batch in self.batches:
                        prepared = self.prepare(batch)
                        event = torch.cuda.Event()
                        event.record(side)
                        if not hand_over((prepared, event)):
                            return
                hand_over(self._done)
            except BaseException as error:  # surfaces in the consumer, with its traceback
                hand_over(error)

        thread = threading.Thread(target=work, name="olymp-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is self._done:
                    return
                if isinstance(item, BaseException):
                    raise item
                prepared, event = item
                main = torch.cuda.current_stream(self.device)
                main.wait_event(event)
                for value in prepared:
                    if isinstance(value, torch.Tensor) and value.is_cuda:
                        value.record_stream(main)  # made on the side stream, used on the main one
                yield prepared
        finally:
            stop.set()
