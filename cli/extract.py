"""`olymp extract`: files → frozen backbone → Parquet embeddings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.console import ExtractView, JsonOption, QuietOption, console, exit_on_error, quiet_output
from pipelines.extract.config import ExtractConfig


def extract(
    inputs: Annotated[Path, typer.Argument(help="A folder of images or audio (recursive) or a CSV/Parquet listing with id,path.", exists=True)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Embedding directory to create or resume.")],
    backbone: Annotated[Optional[str], typer.Option(help="timm or catalog name, HF id, or audio model (panns-cnn14, yamnet, logmel-stats, ...: olymp weights list). Default: the catalog's [defaults]: efficientnet_lite0; audio: PANNs Cnn14 when its weights are on disk, else Lite0 on log-mel.")] = None,
    modality: Annotated[str, typer.Option(help="auto (from the file extensions) | image | audio")] = "auto",
    weights: Annotated[Optional[str], typer.Option(help="Weights file (.safetensors/.pt), or 'random' for smoke tests. Default: offline auto.")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Images: timm stage indices to pool and concatenate instead of the pre-logits, e.g. -1 or -2,-1 (width = sum of the stages' channels).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 where the hardware has it) | fp32 | bf16 | fp16 (CUDA).")] = "auto",
    batch_size: Annotated[Optional[str], typer.Option(help="Images per forward pass, or 'auto' (GPU: the largest that fits, halved on out-of-memory). Default: 8 on CPU, 128 on GPU.")] = None,
    decode: Annotated[str, typer.Option(help="cpu | gpu (JPEGs decoded by nvJPEG on the GPU; other files on the CPU).")] = "cpu",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the backbone (CUDA; pays off on large inputs).")] = False,
    tta: Annotated[str, typer.Option(help="none | hflip (images: mean of the image and its mirror; predict needs the same).")] = "none",
    num_shards: Annotated[Optional[int], typer.Option(min=1, help="Split the inputs into N shards (SLURM arrays, xargs); torchrun sets it itself.")] = None,
    shard_index: Annotated[Optional[int], typer.Option(min=0, help="Which shard this process extracts (0..N-1), with --num-shards.")] = None,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decode processes (default: from the cores).")] = None,
    part_size: Annotated[int, typer.Option(min=1, help="Rows per Parquet part (the unit of resume).")] = 2048,
    max_error_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Stop when this share of inputs fails.")] = 0.5,
    window: Annotated[Optional[float], typer.Option(help="Audio: seconds per window (default: the backbone's training length, e.g. 10 for PANNs).")] = None,
    hop: Annotated[Optional[float], typer.Option(help="Audio: seconds between window starts (default: = window).")] = None,
    pool: Annotated[str, typer.Option(help="Audio: windows → clip: mean | max | meanmax.")] = "mean",
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N inputs (sorted by id).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an output made with another backbone/preprocessing.")] = False,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Embed images or audio clips with a frozen backbone into a Parquet dataset; re-run to resume.

    Example:  olymp extract data/train -o emb/train --backbone efficientnet_lite0

    Audio:    olymp extract clips/ -o emb/clips --backbone logmel-stats --window 5 --pool meanmax

    GPUs:     torchrun --nproc-per-node 4 -m cli extract data/train -o emb/train --decode gpu --batch-size auto
    """
    from pipelines.extract.runner import run_extraction  # torch: imported only when extracting

    with exit_on_error(), quiet_output(quiet), ExtractView() as view:
        config = ExtractConfig(  # range-checks its values (one-line error)
            inputs=str(inputs), output=str(output), modality=modality, backbone=backbone, weights=weights, layers=layers,
            window=window, hop=hop, pool=pool, device=device, precision=precision,
            batch_size=batch_size, workers=workers, part_size=part_size, max_error_rate=max_error_rate,
            limit=limit, overwrite=overwrite, decode=decode, compile=compile, tta=tta,
            num_shards=num_shards, shard_index=shard_index,
        )
        summary = run_extraction(config, on_progress=None if quiet else view.update)
    if json_out:
        typer.echo(json.dumps(asdict(summary), indent=2))
    elif not quiet:
        render_summary(summary)


def render_summary(summary) -> None:
    rows = [("output", summary.output),
            ("embedded", f"{summary.embedded} of {summary.inputs} inputs ({summary.embedding_dim}-d)")]
    if summary.resumed:
        rows.append(("resumed", f"{summary.resumed} were already done"))
    rows.append(("this run", f"{summary.processed} inputs in {summary.seconds:.1f} s "
                             f"({summary.items_per_second:.1f}/s on {summary.device})"))
    errors = f"{summary.errors}" + (f" — see {summary.errors_file}" if summary.errors_file else "")
    rows.append(("errors", f"[red]{errors}[/]" if summary.errors else errors))
    if summary.shard:
        rows.append(("shard", f"{summary.shard}; dataset {summary.status}"))
    for key, value in rows:  # plain lines: long paths must stay whole for copy-paste
        console.print(f"[bold]{key:<9}[/] {value}", highlight=False, soft_wrap=True)
