"""Section 5.3 on a nine-word vocabulary: greedy, sampling, temperature, top-k (and top-p).

Run from the repository root:

    python3 demos/sampling.py                 # the plot goes to runs/sampling/
    python3 demos/sampling.py --out figures/

Prints each step of the book's example next to the book's numbers and saves the
temperature bar chart (figure 5.14) as ``<out>/temperature-plot.png``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import tinygpt  # noqa: F401
except ModuleNotFoundError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinygpt.sampling import (  # noqa: E402
    TOY_INVERSE_VOCAB,
    TOY_NEXT_TOKEN_LOGITS,
    TOY_VOCAB,
    next_token_probabilities,
    print_sampled_tokens,
    process_logits,
    sample_next_token,
    softmax_with_temperature,
    top_k_filter,
)
from tinygpt.tensors import softmax, tensor, topk  # noqa: E402  torch's names

VOCAB, INVERSE_VOCAB = TOY_VOCAB, TOY_INVERSE_VOCAB
# What an LLM might output after "every effort moves you" (section 5.3.1).
NEXT_TOKEN_LOGITS = TOY_NEXT_TOKEN_LOGITS
TEMPERATURES = [1, 0.1, 5]  # original, sharper, flatter
BOOK_COUNTS = {"closer": 73, "forward": 582, "inches": 2, "toward": 343}  # torch seed 123


def fmt(a):
    return np.array2string(np.asarray(a), precision=4, suppress_small=True, floatmode="fixed")


def heading(title):
    print(f"\n=== {title} ===")


def save_temperature_plot(scaled_probas, path):
    """Grouped bar chart of the probabilities per word for each temperature (figure 5.14)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    x = np.arange(len(VOCAB))
    bar_width = 0.15
    fig, ax = plt.subplots(figsize=(5, 3))
    for i, T in enumerate(TEMPERATURES):
        ax.bar(x + i * bar_width, scaled_probas[i], bar_width, label=f"Temperature = {T}")
    ax.set_ylabel("Probability")
    ax.set_xticks(x + bar_width)  # centre the labels under each group
    ax.set_xticklabels(VOCAB.keys(), rotation=90)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sampling"),
                        help="folder for temperature-plot.png (default runs/sampling)")
    parser.add_argument("--seed", type=int, default=123, help="seed for the sampling draws")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logits = NEXT_TOKEN_LOGITS

    heading("Greedy decoding (argmax)")
    next_token_logits = tensor(logits)
    probas = softmax(next_token_logits, dim=0)
    print("probas:", fmt(probas))
    greedy_id = int(sample_next_token(logits, temperature=0.0)[0])
    print("next token:", INVERSE_VOCAB[greedy_id], "(the book: forward)")

    heading("Probabilistic sampling (torch.multinomial in the book)")
    sampled_id = int(sample_next_token(logits, temperature=1.0, rng=args.seed)[0])
    print(f"one draw with seed {args.seed}:", INVERSE_VOCAB[sampled_id])
    print(f"1,000 draws with seed {args.seed}:")
    print_sampled_tokens(probas, INVERSE_VOCAB, num_samples=1000, seed=args.seed)
    print("These counts come from NumPy's random generator, not torch's, so they differ")
    print("from the book's (torch.manual_seed(123); its listing stops at 'toward'):")
    print("   ", ", ".join(f"{n} x {word}" for word, n in BOOK_COUNTS.items()), "(others 0)")
    print("Both follow the same distribution; the exact expected counts, 1,000 x p:")
    for i, p in enumerate(probas):
        print(f"{1000 * float(p):8.2f} x {INVERSE_VOCAB[i]}")

    heading("Temperature scaling (figure 5.14)")
    scaled_probas = [softmax_with_temperature(logits, T) for T in TEMPERATURES]
    print(f"{'word':>8} " + " ".join(f"{'T=' + str(T):>8}" for T in TEMPERATURES))
    for i, word in INVERSE_VOCAB.items():
        print(f"{word:>8} " + " ".join(f"{float(p[i]):8.4f}" for p in scaled_probas))
    plot_path = args.out / "temperature-plot.png"
    save_temperature_plot(scaled_probas, plot_path)
    print("saved", plot_path)

    heading("Exercise 5.1: how often is 'pizza' sampled?")
    pizza = VOCAB["pizza"]
    for T in TEMPERATURES:
        print(f"-- temperature {T}: 1,000 draws")
        counts = print_sampled_tokens(
            next_token_probabilities(logits, T), INVERSE_VOCAB, seed=args.seed
        )
        print(f"   pizza sampled {counts[pizza]} times")
    print("The faster, exact way: read P(pizza) off the probabilities, no sampling.")
    for T in TEMPERATURES:
        p = float(next_token_probabilities(logits, T)[pizza])
        print(f"T = {T:<4}: P(pizza) = {p:.6f}  (expected {1000 * p:.2f} per 1,000 draws)")

    heading("Top-k sampling, k = 3 (figure 5.15)")
    top_logits, top_pos = topk(next_token_logits, 3)
    print("Top logits:", fmt(top_logits), "(the book: [6.7500, 6.2800, 4.5100])")
    print("Top positions:", fmt(top_pos), "(the book: [3, 7, 0])")
    # below the 3rd largest logit (top_logits[-1]): -inf, so softmax gives those tokens
    # probability 0; top_k_filter is the book's where(next_token_logits < top_logits[-1], ...)
    new_logits = top_k_filter(next_token_logits, 3)
    print("masked logits:", fmt(new_logits))
    same = np.array_equal(np.asarray(new_logits), process_logits(logits, top_k=3))
    print("the fast path's process_logits(logits, top_k=3) gives the same:", same)
    topk_probas = softmax(new_logits, dim=0)
    print("top-k probas:", fmt(topk_probas))
    print("(the book:     [0.0615 0.0000 0.0000 0.5775 0.0000 0.0000 0.0000 0.3610 0.0000])")

    heading("Beyond the book: top-p (nucleus) sampling")
    for T, p in [(1.0, 0.5), (1.0, 0.9), (5.0, 0.5)]:
        probs = next_token_probabilities(logits, T, top_p=p)
        kept = [INVERSE_VOCAB[i] for i in np.flatnonzero(probs)]
        print(f"T = {T}, top_p = {p}: keeps {kept}")


if __name__ == "__main__":
    main()
