"""One network call on the CPU, under each way of making it faster: which to keep.

For the networks of two MONAI bundles (random weights; time does not depend on them):
``spleen`` (UNet (16, 32, 64, 128, 256), 2 res units, batch norm; 4 windows of 96^3, as
the spleen bundle's ``sw_batch_size``) and ``wholebody`` (SegResNet, init_filters 32, 105
classes; one window of 96^3), the best of ``--repeats`` calls after a warm-up, for:

* ``eager``: float32, default memory layout;
* ``channels_last``: float32, ``torch.channels_last_3d`` (what the project uses);
* ``jit_freeze``: ``torch.jit.trace`` + ``torch.jit.optimize_for_inference`` (frozen
  weights, oneDNN conv + batch-norm / activation fusion), channels_last_3d;
* ``compile``: ``torch.compile`` (inductor, C++ backend), default layout, and
  ``compile_cl`` the same in channels_last_3d; the first call (compilation) is reported
  as preparation; a variant that fails is reported with its error;
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)``, channels_last_3d;
* each with 1 and 2 torch threads (``--threads``);

and, for each variant, the fraction of argmax labels that differ from ``eager``.
The CPU's bfloat16 capability is printed: without native support, the ``bf16`` row is
oneDNN's emulation.

    python bench/bench_cpu_network.py [--networks spleen wholebody] [--threads 1 2]
        [--variants ...] [--write-results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = ("eager", "channels_last", "jit_freeze", "compile", "compile_cl", "bf16")


#: bench name -> the network of scripts/evaluate_precision.py's BUNDLE_NETWORKS, and the
#: windows of one call (the spleen bundle's sw_batch_size 4; whole-body one window)
NETWORKS = {
    "spleen": ("spleen-unet (random weights)", 4),
    "wholebody": ("wholebody-segresnet (random weights)", 1),
}


def build(name: str):
    """``(network, input batch)`` of one bundle's network, random weights, eval mode."""
    import torch
    from monai.networks import nets

    sys.path.insert(0, str(HERE.parent / "scripts"))
    from evaluate_precision import BUNDLE_NETWORKS

    key, windows = NETWORKS[name]
    cls_name, args = BUNDLE_NETWORKS[key]["network"]
    torch.manual_seed(0)
    net = getattr(nets, cls_name)(**args)
    return net.eval(), torch.randn(windows, 1, 96, 96, 96)


def variant(name: str, net, x):
    """``(callable, input, seconds to prepare)`` for one variant."""
    import torch

    last = torch.channels_last_3d
    started = time.perf_counter()
    if name == "eager":
        return net, x, 0.0
    if name == "compile":
        compiled = torch.compile(net)
        with torch.no_grad():
            compiled(x)  # compile now, timed as preparation
        return compiled, x, time.perf_counter() - started
    net_cl, x_cl = net.to(memory_format=last), x.contiguous(memory_format=last)
    if name == "channels_last":
        return net_cl, x_cl, 0.0
    if name == "jit_freeze":
        with torch.no_grad():
            traced = torch.jit.optimize_for_inference(torch.jit.trace(net_cl, x_cl[:1]))
        return traced, x_cl, time.perf_counter() - started
    if name == "compile_cl":
        compiled = torch.compile(net_cl)
        with torch.no_grad():
            compiled(x_cl)  # compile now, timed as preparation
        return compiled, x_cl, time.perf_counter() - started
    if name == "bf16":

        def call(inputs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net_cl(inputs)

        return call, x_cl, 0.0
    raise ValueError(name)


def time_call(fn, x, repeats: int) -> tuple[float, object]:
    import torch

    with torch.no_grad():
        out = fn(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            out = fn(x)
            best = min(best, time.perf_counter() - started)
    return best, out


def main(argv: list[str] | None = None) -> int:
    import torch

    from napari_medseg.inference.devices import cpu_bf16_support

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["spleen", "wholebody"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    support = cpu_bf16_support()
    print(f"CPU bfloat16: {support.describe()}", file=sys.stderr)
    rows = []
    for network in args.networks:
        net, x = build(network)
        with torch.no_grad():
            reference = net(x).argmax(1)
        for threads in args.threads:
            torch.set_num_threads(threads)
            base = None
            for name in args.variants:
                try:
                    fn, inputs, prepare = variant(name, net, x)
                    seconds, out = time_call(fn, inputs, args.repeats)
                except Exception as error:  # noqa: BLE001 - a failing variant is a result
                    reason = str(error).strip().splitlines()[0][:120] if str(error) else ""
                    rows.append(
                        (
                            network,
                            threads,
                            name,
                            None,
                            None,
                            None,
                            f"{type(error).__name__}: {reason}",
                        )
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
                    torch._dynamo.reset()
                    continue
                labels = out.float().argmax(1)
                differ = float((labels != reference).float().mean())
                base = seconds if name == "eager" else base
                rows.append(
                    (
                        network,
                        threads,
                        name,
                        seconds,
                        seconds / base if base else 1.0,
                        prepare,
                        differ,
                    )
                )
                print(rows[-1], file=sys.stderr, flush=True)
                del fn
    lines = [
        f"CPU bfloat16: {support.describe()}; torch {torch.__version__}; best of "
        f"{args.repeats} calls after a warm-up.",
        "",
        "| network | threads | variant | s per call | vs eager | preparation s | "
        "labels differing from eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for network, threads, name, seconds, ratio, prepare, differ in rows:
        if seconds is None:
            lines.append(f"| {network} | {threads} | {name} | failed | | | {differ} |")
            continue
        lines.append(
            f"| {network} | {threads} | {name} | {seconds:.3f} | {ratio:.2f}x | "
            f"{prepare:.1f} | {100 * differ:.3f} % |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        from _results import append_section
        from bench_dicom_load import machine_info

        info = machine_info()
        header = (
            f"`python bench/bench_cpu_network.py {' '.join(sys.argv[1:])}`\n\nMachine: "
            f"{info['cpu']}, {info['cores']}, {info['ram']} RAM. Commit {info['commit']}.\n\n"
        )
        append_section("One network call on the CPU: layouts, fusion, compile, bf16", header + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
