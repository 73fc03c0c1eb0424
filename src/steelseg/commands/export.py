"""``steelseg export RUN_DIR [--int8 --calibration IMAGES]``: the run's network as ONNX, checked
against PyTorch; with ``--int8`` also an INT8 model calibrated on the user's images, kept only if
it agrees with fp32 on held-out ones. ``--format smp --out DIR``: the folder smp's
``from_pretrained`` loads."""

from __future__ import annotations

from steelseg.errors import SteelsegError

HELP = "export a run's network to ONNX (and INT8 with --int8), checked against PyTorch"


class ExportOptionError(SteelsegError, ValueError):
    """Options of ``export`` that do not go together."""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir")
    parser.add_argument(
        "--format",
        choices=["onnx", "smp"],
        default="onnx",
        help="onnx (default), or smp: a folder segmentation_models_pytorch's from_pretrained loads (--out DIR)",
    )
    parser.add_argument(
        "--out", help="ONNX file to write (default RUN_DIR/model.onnx; not with --int8), or the folder of --format smp"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |probability difference| accepted (default 1e-4)"
    )
    int8 = parser.add_argument_group("INT8 (onnxruntime static quantisation, QDQ, 7-bit weights per tensor)")
    int8.add_argument("--int8", action="store_true", help="also write RUN_DIR/model.int8.onnx")
    int8.add_argument("--calibration", metavar="IMAGES", help="folder of images (or a dataset) to calibrate on")
    int8.add_argument(
        "--check",
        metavar="IMAGES",
        help="held-out images (a dataset: Dice against its masks) to compare with fp32 on "
        "(default: every 4th calibration image, then not calibrated on)",
    )
    int8.add_argument(
        "--min-agreement", type=float, default=0.99, help="least share of mask pixels equal to fp32's (default 0.99)"
    )
    int8.add_argument("--max-dice-drop", type=float, default=0.01, help="largest Dice loss against fp32 (default 0.01)")


def run(args) -> None:
    if args.format == "smp":
        if not args.out or args.int8:
            raise ExportOptionError("--format smp writes a folder: give --out DIR (and no --int8)")
        from steelseg.inference.export_smp import export_smp

        print(export_smp(args.run_dir, args.out).report())
        return
    if args.int8 and not args.calibration:
        raise ExportOptionError("--int8 needs --calibration IMAGES: a folder of images like those it will predict")
    if args.calibration and not args.int8:
        raise ExportOptionError("--calibration is for --int8; add --int8 to write an INT8 model")
    if args.int8 and args.out:
        raise ExportOptionError("--out is for the fp32 file; the INT8 model is written as RUN_DIR/model.int8.onnx")
    if not 0 < args.min_agreement <= 1:
        raise ExportOptionError(f"--min-agreement {args.min_agreement}: expected a share in (0, 1]")
    from steelseg.inference.export import export_onnx

    print(export_onnx(args.run_dir, args.out, tolerance=args.tolerance).report())
    if args.int8:
        from steelseg.inference.quantize import export_int8

        check = export_int8(args.run_dir, args.calibration, args.check, args.min_agreement, args.max_dice_drop)
        print(check.report())
