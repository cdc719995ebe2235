"""Is our training curve PyTorch's? The chapter's run over many seeds, three arms, tested.

    python tools/curve_stats.py --text the-verdict.txt [--seeds 12] [--config compact]
                                [--arms f64,f32,torch] [--out results.json] [--threads 1]
    python tools/curve_stats.py --check-uniforms    # the keep masks themselves

Arms (each run in its own process, one after the other):

* ``f64``   tinygpt with masks from float64 NumPy uniforms (``Generator.random()``, what
            ``fused.dropout_mask`` drew until this study; patched in here);
* ``f32``   tinygpt as shipped: masks from float32 uniforms (``Generator.random(dtype=
            float32)``, the cheaper draw, which ``fused.dropout_mask`` returned to);
* ``torch`` the book's PyTorch loop on the tests' reference model, torch's own masks.

Every run is the chapter's 5.2 run (``bench_chapter.run_tinygpt`` / ``run_torch``):
AdamW(lr 0.0004, weight_decay 0.1), batch 2, 10 epochs, eval_freq 5, eval_iter 5,
context 256, the 90/10 split, drop_rate 0.1, shuffled batches. Seeds 1..N. Models:

* ``compact`` (default): GPT_CONFIG_124M with one transformer block, over the text's own
  vocabulary (GPT-2's ids that the-verdict uses, renumbered: 1,421 of them, for both
  engines). It memorises like the 124M model: train loss 0.82-0.97 after 10 epochs,
  val loss lowest at step 45-60, then rising. 45-120 s a run on one core.
* ``small``: 4 layers, emb_dim 256, 4 heads, GPT-2's vocabulary. Too slow to learn at the
  chapter's lr: train loss still ~5.0 after 10 epochs (seed 1), and 100-160 s a run.
* ``124M``: the book's model (about 5 min a run here on two cores).

Per run it records the curve (each evaluation's epoch, step, train and val loss) and from
it: the final train and val loss, the largest spike (max over evaluations of train loss /
previous evaluation's train loss), the step-20 spike (the evaluation at step 20 over the
one at step 15, where the chapter's curves jump) and the epoch of the lowest val loss.
Results go to a JSON file (default ``tools/results/curve_stats-<config>.json``) after
every run, each run with its commit and date, and each sweep with its command and machine;
runs already there are skipped, so the script can be stopped and rerun. ``--merge FILE``
adds the runs of other result files (sweeps run side by side, one arm each). It prints,
as markdown, each arm's mean, SD and range, and for each pair of arms the difference of
means with its 95% CI, Welch's t-test p and the Mann-Whitney U p (two-sided).

The torch loop prints its losses with three decimals and they are read from that print.
"""

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_chapter import CFG  # noqa: E402  (the 124M config)
from machine import cpu_busy_fraction  # noqa: E402
from record import commit, machine  # noqa: E402  (provenance, as bench results store it)

SMALL = dict(CFG, n_layers=4, emb_dim=256, n_heads=4)
WIDE = dict(CFG, n_layers=1)
# "compact": SMALL over the text's own vocabulary (vocab_size = 0 here: set per text)
CONFIGS = {"small": SMALL, "compact": dict(WIDE, vocab_size=0), "124M": CFG}
ARMS = ("f64", "f32", "torch")
METRICS = (("final_train", "final train loss"), ("final_val", "final val loss"),
           ("spike20", "step-20 spike"), ("spike", "largest spike"))
SPIKE = 1.5  # a spike: train loss > 1.5x the previous evaluation's


# ----------------------------------------------------------------------------------
# One run (in a worker process).


def float64_dropout_mask(shape, p, dtype):
    """``fused.dropout_mask`` as it was during this study's first run: float64 uniforms."""
    from tinygpt.backend import get_rng, xp

    keep = xp.asarray(get_rng().random(shape)) >= p
    return keep.astype(dtype) * (1.0 / (1.0 - p))


class CompactTokenizer:
    """GPT-2's tokenizer with the ids renumbered 0..n-1 over the ids that ``texts`` use."""

    def __init__(self, base, texts):
        self.base = base
        self.ids = sorted({t for text in texts for t in base.encode(text, allowed_special="all")})
        self.index = {t: i for i, t in enumerate(self.ids)}
        self.n_vocab = len(self.ids)

    def encode(self, text, **kwargs):
        return [self.index[t] for t in self.base.encode(text, **kwargs)]

    def decode(self, ids):
        return self.base.decode([self.ids[i] for i in ids])


def use_compact_vocab(text, cfg):
    """Make both engines' ``get_tokenizer`` give a CompactTokenizer over ``text``;
    returns ``cfg`` with vocab_size set to its size."""
    import tinygpt.data
    import tinygpt.tokenizer

    split_idx = int(0.90 * len(text))  # the chapter's split cuts a token in two
    texts = (text, text[:split_idx], text[split_idx:], "Every effort moves you")
    tokenizer = CompactTokenizer(tinygpt.tokenizer.get_tokenizer(), texts)
    tinygpt.tokenizer.get_tokenizer = tinygpt.data.get_tokenizer = lambda: tokenizer
    return dict(cfg, vocab_size=len(tokenizer.ids))


def run_arm(arm, text, seed, cfg, epochs=10, threads=1):
    """One chapter run: {"train": [...], "val": [...], "seconds": s}."""
    import bench_chapter

    if cfg["vocab_size"] == 0:
        cfg = use_compact_vocab(text, cfg)

    printed = io.StringIO()
    if arm == "torch":
        with contextlib.redirect_stdout(printed):
            seconds, _, _ = bench_chapter.run_torch(text, epochs, threads, seed, cfg=cfg)
        evals = parse_evaluations(printed.getvalue())
        train, val = [t for _, _, t, _ in evals], [v for _, _, _, v in evals]
    else:
        import tinygpt.fused
        import tinygpt.train

        if arm == "f64":
            tinygpt.fused.dropout_mask = float64_dropout_mask
        simple, curves = tinygpt.train.train_model_simple, []

        def recording(*args, **kwargs):  # run_tinygpt keeps only the last losses
            out = simple(*args, **kwargs)
            curves.append(out)
            return out

        tinygpt.train.train_model_simple = recording
        with contextlib.redirect_stdout(printed):
            seconds, _, _ = bench_chapter.run_tinygpt(text, epochs, seed, cfg=cfg)
        # the losses at full precision; the print gives each evaluation's epoch and step
        train, val = [float(x) for x in curves[0][0]], [float(x) for x in curves[0][1]]
        evals = parse_evaluations(printed.getvalue())
    if len(evals) != len(train):
        raise RuntimeError(f"{arm}: {len(evals)} evaluation lines printed for "
                           f"{len(train)} losses")
    return {"train": train, "val": val, "epoch": [e for e, _, _, _ in evals],
            "step": [s for _, s, _, _ in evals], "seconds": seconds}


EVALUATION = re.compile(r"Ep (\d+) \(Step (\d+)\): Train loss ([\d.]+), Val loss ([\d.]+)")


def parse_evaluations(printed):
    """[(epoch, step, train loss, val loss)] from the chapter loop's printed lines
    (``Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933``; both engines print them)."""
    return [(int(e), int(s), float(t), float(v)) for e, s, t, v in EVALUATION.findall(printed)]


def summarize(run):
    """The numbers compared across arms, from one run's curve. Runs stored before the
    curve kept its epochs and steps have evaluations every 5 steps; their epoch is None."""
    train, val = run["train"], run["val"]
    steps = run.get("step") or [5 * i for i in range(len(train))]
    ratios = [b / a for a, b in zip(train, train[1:])]
    worst = max(range(len(ratios)), key=ratios.__getitem__)
    best_val = min(range(len(val)), key=val.__getitem__)
    at20 = steps.index(20) if 20 in steps[1:] else None
    return {"final_train": train[-1], "final_val": val[-1], "spike": ratios[worst],
            "spike_step": steps[worst + 1], "min_val": val[best_val],
            "min_val_step": steps[best_val],
            "min_val_epoch": run["epoch"][best_val] if run.get("epoch") else None,
            "spike20": train[at20] / train[at20 - 1] if at20 is not None else None}


# ----------------------------------------------------------------------------------
# Statistics.


def mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def welch(a, b):
    """Welch's t-test, two-sided: (mean(a) - mean(b), 95% CI of it, p)."""
    from scipy import stats

    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:  # both samples constant
        return ma - mb, (ma - mb, ma - mb), 1.0 if ma == mb else 0.0
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * se
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return ma - mb, (ma - mb - half, ma - mb + half), float(p)


def mann_whitney(a, b):
    """Mann-Whitney U test, two-sided p (exact without ties for small n, else normal)."""
    from scipy import stats

    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def spread(xs, digits=3):
    """``mean ± SD (min-max)`` of ``xs`` (SD 0 for one value)."""
    m, sd = mean_sd(xs) if len(xs) > 1 else (xs[0], 0.0)
    return f"{m:.{digits}f} ± {sd:.{digits}f} ({min(xs):.{digits}f}–{max(xs):.{digits}f})"


def table(results, arms):
    """The markdown report of ``results`` ({arm: {seed: run}})."""
    rows = {arm: [summarize(r) for _, r in sorted(results[arm].items(), key=lambda kv:
                                                   int(kv[0]))] for arm in arms}
    lines = ["| arm | runs | final train loss | final val loss | min val loss (mean step) "
             "| epoch of min val loss: median (range) | step-20 spike | largest spike "
             "| spikes > 1.5 (median size; steps) | s/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        s = rows[arm]
        if not s:
            continue
        cells = [spread([r[key] for r in s]) for key in ("final_train", "final_val")]
        cells.append(f"{spread([r['min_val'] for r in s])} "
                     f"({sum(r['min_val_step'] for r in s) / len(s):.0f})")
        epochs = sorted(r["min_val_epoch"] for r in s if r["min_val_epoch"] is not None)
        cells.append(f"{epochs[len(epochs) // 2]} ({epochs[0]}–{epochs[-1]})" if epochs
                     else "-")
        at20 = [r["spike20"] for r in s if r["spike20"] is not None]
        cells.append(spread(at20, 2) if at20 else "-")
        cells.append(spread([r["spike"] for r in s], 2))
        spikes = sorted(r["spike"] for r in s if r["spike"] > SPIKE)
        steps = sorted({r["spike_step"] for r in s if r["spike"] > SPIKE})
        med = f"{spikes[len(spikes) // 2]:.2f}" if spikes else "-"
        secs = sum(results[arm][k]["seconds"] for k in results[arm]) / len(s)
        lines.append(f"| {arm} | {len(s)} | {' | '.join(cells)} "
                     f"| {len(spikes)}/{len(s)} ({med}; {','.join(map(str, steps)) or '-'}) "
                     f"| {secs:.0f} |")
    lines += ["", "| comparison | metric | difference of means [95% CI] | Welch p "
              "| Mann-Whitney p |", "|---|---|---|---|---|"]
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            if len(rows[a]) < 2 or len(rows[b]) < 2:
                continue
            for key, name in METRICS:
                xa = [r[key] for r in rows[a] if r[key] is not None]
                xb = [r[key] for r in rows[b] if r[key] is not None]
                if len(xa) < 2 or len(xb) < 2:
                    continue
                d, (lo, hi), p = welch(xa, xb)
                lines.append(f"| {a} vs {b} | {name} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                             f"| {p:.3f} | {mann_whitney(xa, xb):.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# The uniforms themselves (--check-uniforms).


def check_uniforms(calls=200, seed=1, p=0.1):
    """Keep masks ``u >= p`` from float32 and float64 uniforms of one Generator, drawn in
    a shape the chapter's attention dropout uses, (2, heads, T, T) at T = 64 (12 heads);
    printed as markdown: kept fraction per call (mean, SD against the binomial SD),
    correlation of neighbouring positions (last axis), of the same position in
    successive calls, and the spread of the per-position keep rate (SD against the
    binomial SD, max |z|)."""
    import numpy

    shape = (2, 12, 64, 64)
    n = math.prod(shape)
    lines = ["| uniforms | kept fraction per call: mean (SD; binomial SD) | neighbour corr "
             "| successive-call corr | per-position keep rate: SD (binomial SD), max abs z |",
             "|---|---|---|---|---|"]
    for dtype in (numpy.float32, numpy.float64):
        rng = numpy.random.default_rng(seed)
        keep = numpy.stack([rng.random(shape, dtype=dtype) >= p for _ in range(calls)])
        keep = keep.reshape(calls, -1, shape[-1]).astype(numpy.float32)  # (calls, rows, T)
        frac = keep.reshape(calls, -1).mean(1, dtype=numpy.float64)
        centred = keep - numpy.float32(keep.mean(dtype=numpy.float64))
        var = (centred * centred).mean(dtype=numpy.float64)
        neighbour = (centred[..., 1:] * centred[..., :-1]).mean(dtype=numpy.float64) / var
        successive = (centred[1:] * centred[:-1]).mean(dtype=numpy.float64) / var
        rate = keep.mean(0, dtype=numpy.float64).ravel()
        sd_rate = math.sqrt((1 - p) * p / calls)
        z = numpy.abs(rate - (1 - p)) / sd_rate
        lines.append(f"| {numpy.dtype(dtype).name} | {frac.mean():.5f} ({frac.std(ddof=1):.5f};"
                     f" {math.sqrt(p * (1 - p) / n):.5f}) | {neighbour:+.5f} "
                     f"| {successive:+.5f} | {rate.std():.5f} ({sd_rate:.5f}), {z.max():.2f} |")
    lines.append(f"\n{calls} calls of {n:,} uniforms each, seed {seed}; mask = u >= {p}; "
                 f"correlations of the keep indicators; if independent their SD is "
                 f"1/sqrt(pairs) = {1 / math.sqrt((calls - 1) * n):.5f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# The driver.


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def load(path):
    return json.loads(path.read_text()) if path.exists() else {}


def save(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", type=Path, help="the-verdict.txt (default: tinygpt's "
                        "lookup: the folder $TINYGPT_DATA names, its cache, the download)")
    parser.add_argument("--seeds", type=int, default=12, help="seeds 1..N per arm")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--config", choices=sorted(CONFIGS), default="compact")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="results JSON "
                        "(default tools/results/curve_stats-<config>.json)")
    parser.add_argument("--report-only", action="store_true", help="print the table, run nothing")
    parser.add_argument("--merge", type=Path, nargs="+", default=(), metavar="FILE",
                        help="add the runs (and sweeps) of these result files to --out first")
    parser.add_argument("--check-uniforms", action="store_true",
                        help="test the float32 / float64 keep masks themselves, then stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_uniforms:
        print(check_uniforms())
        return
    if args.text is None:
        from tinygpt.io.textsource import find_verdict

        args.text = find_verdict()
    cfg = CONFIGS[args.config]
    if args.worker:
        text = Path(args.text).read_text(encoding="utf-8")
        run = run_arm(args.worker, text, args.seed, cfg, args.epochs, args.threads)
        run["versions"] = machine()["versions"]  # numpy's, and torch's in its arm
        print(json.dumps(run))
        return

    arms = [a.strip() for a in args.arms.split(",")]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arm(s) {sorted(unknown)}; choose from {', '.join(ARMS)}")
    out = args.out or REPO / "tools" / "results" / f"curve_stats-{args.config}.json"
    data = load(out)
    key = f"{args.config}-epochs{args.epochs}"
    results = data.setdefault(key, {})
    sweeps = data.setdefault("sweeps", {}).setdefault(key, [])
    for other in map(load, args.merge):
        for arm, runs in other.get(key, {}).items():
            for seed, run in runs.items():
                results.setdefault(arm, {}).setdefault(seed, run)
        sweeps.extend(s for s in other.get("sweeps", {}).get(key, []) if s not in sweeps)
    if args.merge:
        save(out, data)
    for arm in arms:
        results.setdefault(arm, {})
    sweep = {"command": " ".join(["python", *sys.argv]), "arms": arms, "seeds": args.seeds,
             "commit": commit(), "machine": machine(cpu_busy_fraction(0.5)),
             "started": now(), "runs": 0}
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    for seed in range(1, args.seeds + 1) if not args.report_only else ():
        for arm in arms:  # arms interleaved, so a stopped sweep stays balanced
            if str(seed) in results[arm]:
                continue
            worker_env = dict(env, TINYGPT_MALLOC_TUNING="0") if arm == "torch" else env
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", arm, "--seed", str(seed),
                 "--text", str(args.text), "--config", args.config,
                 "--epochs", str(args.epochs), "--threads", str(args.threads)],
                env=worker_env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{arm} seed {seed} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            results[arm][str(seed)] = dict(run, commit=sweep["commit"], date=now())
            sweep["runs"] += 1
            sweep["wall_s"] = round(time.perf_counter() - started)
            if sweep not in sweeps:
                sweeps.append(sweep)
            save(out, data)
            s = summarize(results[arm][str(seed)])
            print(f"{arm:6} seed {seed:3}: train {s['final_train']:.3f} val "
                  f"{s['final_val']:.3f} spike {s['spike']:.2f} (step {s['spike_step']}) "
                  f"{results[arm][str(seed)]['seconds']:.0f} s", flush=True)
    print(f"\n{args.config}, {args.epochs} epochs, seeds 1..{args.seeds}, results in {out} "
          f"(this call: {time.perf_counter() - started:.0f} s)\n")
    print(table(results, arms))


if __name__ == "__main__":
    main()
