"""The full-budget runs on a GPU machine that has no network (the lent H100/H200 of this project's workplace): what
it lacks travels with the repository, and one command there runs both GPU benchmarks.

    python benchmarks/gpu_offline.py prepare          # here: .devcarry/ (git-ignored): wheels for the machine's
                                                      # Python 3.12, all-MiniLM-L6-v2 as fp16 (half the bytes), SQuAD dev
    python3 benchmarks/gpu_offline.py run --out DIR   # there, after installing the wheels (see `prepare`'s output):
                                                      # examples/squad-full.yaml (benchmarks/pipeline.py) and
                                                      # benchmarks/decoder_gpu.py, their sections and reports into DIR
    python benchmarks/gpu_offline.py record DIR       # here: the sections into benchmarks/RESULTS.md

The base model travels in fp16 and is turned back into fp32 there (the weights are then MiniLM's rounded to fp16;
training runs in bf16 autocast either way). FAISS does not travel: exact search runs through torch on the GPU.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".devcarry"
WHEELS = ["pydantic==2.14.4", "pydantic_core==2.50.5", "typing-inspection==0.4.5", "annotated-types==0.8.0",
          "bm25s==0.3.16", "PyStemmer==3.1.0", "ir_measures==0.4.3", "pytrec_eval-terrier==0.5.11", "ir_datasets==0.6.3",
          "ranx==0.3.21", "orjson==3.13.0", "lz4==4.4.5", "cbor2==6.3.0", "fastparquet==2026.9.0", "cramjam==2.14.0",
          "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "sentence-transformers==6.2.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
SQUAD = Path("squad-v1.1") / "dev-v1.1.json"


def prepare() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from rtune.models.names import packaged_default

    shutil.rmtree(CARRY, ignore_errors=True)
    (CARRY / "whl").mkdir(parents=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *platforms, "-d", str(CARRY / "whl"), *WHEELS], check=True)
    model = packaged_default()
    shutil.copytree(model, CARRY / "minilm", ignore=shutil.ignore_patterns("*.md", ".gitattributes"))
    weights = load_file(CARRY / "minilm" / "model.safetensors")
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, CARRY / "minilm" / "model.safetensors")
    data = Path(os.environ.get("RTUNE_DATA", REPO.parent / "shared" / "data")) / SQUAD
    with open(data, "rb") as source, gzip.open(CARRY / "dev-v1.1.json.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"{CARRY}: {size / 2**20:.1f} MiB. On the GPU machine, in the repository:\n"
          "  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/whl/*.whl && "
          "PYTHONPATH=/tmp/site:$PWD/src python3 benchmarks/gpu_offline.py run --out $OUT")


def _fp32_model(target: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(CARRY / "minilm", target, dirs_exist_ok=True)
    weights = load_file(target / "model.safetensors")
    save_file({k: v.to(torch.float32) for k, v in weights.items()}, target / "model.safetensors")
    return target


def run(out: Path, skip_decoder: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/rtune-gpu")
    model = _fp32_model(work / "minilm")
    data = work / "data"
    (data / SQUAD).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(CARRY / "dev-v1.1.json.gz", "rb") as source, open(data / SQUAD, "wb") as target:
        shutil.copyfileobj(source, target)
    env = {**os.environ, "RTUNE_DATA": str(data), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"], check=False)
    started = time.time()
    pipeline = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pipeline.py"), "--pipeline",
                               str(REPO / "examples" / "squad-full.yaml"), "--budget", "full", "--work", str(work),
                               "--no-write", "--set", f"base_model={model}", "--body-out", str(out / "pipeline_full.md")],
                              env=env)
    print(f"pipeline: exit {pipeline.returncode} after {time.time() - started:.0f} s", flush=True)
    run_dir = work / "pipeline-full" / "run"
    for name in ("report.md", "results.csv", "run.log"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    if not skip_decoder:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "decoder_gpu.py"), "--rows", "1024", "--no-write",
                        "--tokenizer-from", str(model), "--body-out", str(out / "decoder_gpu.md")], env=env)


def record(folder: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import update_results

    for name, section in (("pipeline_full.md", "pipeline:full"), ("decoder_gpu.md", "decoder-gpu:0.5b")):
        if (folder / name).is_file():
            update_results(section, (folder / name).read_text(encoding="utf-8"))
            print(f"RESULTS.md: {section} from {folder / name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare")
    runner = commands.add_parser("run")
    runner.add_argument("--out", required=True)
    runner.add_argument("--skip-decoder", action="store_true")
    recorder = commands.add_parser("record")
    recorder.add_argument("folder")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare()
    elif args.command == "run":
        run(Path(args.out), args.skip_decoder)
    else:
        record(Path(args.folder))


if __name__ == "__main__":
    main()
