"""``steelseg export RUN_DIR``: the run's network as ONNX, checked against PyTorch."""

from __future__ import annotations

HELP = "export a run's network to ONNX, checked against PyTorch"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="ONNX file to write (default RUN_DIR/model.onnx)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |probability difference| accepted (default 1e-4)"
    )


def run(args) -> None:
    from steelseg.inference.export import export_onnx

    print(export_onnx(args.run_dir, args.out, tolerance=args.tolerance).report())
