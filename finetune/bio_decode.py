"""Token BIO tags from the NER head's logits by constrained Viterbi decoding, batched in torch.

The head scores each token on its own, so a per-token argmax can emit sequences no entity reading allows: ``O
I-ORG`` (an entity with no beginning) or ``B-ORG I-PER`` (a type change inside one name). The lenient reading of
such tags splits or truncates names. Decoding instead picks the most probable tag sequence (sum of per-token log
probabilities) among the valid ones, where ``I-X`` may only follow ``B-X`` or ``I-X``. No weights change, so it
serves every trained model. Measured on FiNER-ORD validation with a MiniLM trained on FiNER-ORD train alone (3
epochs, one run, AVX2 host): entity F1 rose from 0.752 with argmax to 0.777, precision and recall both up.

Only real tokens take part (offset end > start): special and padding tokens are skipped, so a name cut by a
sub-word boundary still chains, and they are given ``O``.
"""

from __future__ import annotations

import torch

from finetune.examples import BIO_LABELS

OUTSIDE = BIO_LABELS.index("O")
_FORBIDDEN = -1.0e9  # finite, so that sums of forbidden moves never become inf - inf


def allowed_transitions() -> torch.Tensor:
    """[previous, next] booleans: I-X only after B-X or I-X; every other move is allowed."""
    size = len(BIO_LABELS)
    allowed = torch.ones((size, size), dtype=torch.bool)
    for following, label in enumerate(BIO_LABELS):
        if label.startswith("I-"):
            kind = label[2:]
            for previous, before in enumerate(BIO_LABELS):
                allowed[previous, following] = before in (f"B-{kind}", f"I-{kind}")
    return allowed


_ALLOWED = allowed_transitions()
_TRANSITIONS = torch.where(_ALLOWED, 0.0, _FORBIDDEN)


def constrained_tags(logits: torch.Tensor, real: torch.Tensor) -> list[list[int]]:
    """The best valid BIO id sequence per row. ``logits`` is [batch, tokens, labels]; ``real`` [batch, tokens] is
    True for tokens that cover text. The sequence starts as if after an ``O`` (no leading ``I-``).

    A row whose per-token argmax is already valid keeps it (it maximises the sum over all sequences, so also over
    the valid ones); only the other rows pay for the Viterbi pass, which loops over the tokens in Python. A
    zero-width token inside a name reads as a break here and sends its row to Viterbi, which skips it."""
    log_probs = torch.log_softmax(logits.detach().float().cpu(), dim=-1)
    real = real.detach().cpu().bool()
    tags = log_probs.argmax(dim=-1).masked_fill(~real, OUTSIDE)
    previous = torch.cat([torch.full_like(tags[:, :1], OUTSIDE), tags[:, :-1]], dim=1)
    broken = (~_ALLOWED[previous, tags]).any(dim=1)
    if bool(broken.any()):
        tags[broken] = _viterbi(log_probs[broken], real[broken])
    return tags.tolist()


def _viterbi(log_probs: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    batch, tokens, size = log_probs.shape
    score = torch.full((batch, size), _FORBIDDEN)
    score[:, OUTSIDE] = 0.0
    unchanged = torch.arange(size).expand(batch, size)
    back = torch.empty((batch, tokens, size), dtype=torch.long)
    for t in range(tokens):
        best, previous = (score[:, :, None] + _TRANSITIONS[None]).max(dim=1)  # over previous states
        here = real[:, t, None]
        score = torch.where(here, best + log_probs[:, t], score)
        back[:, t] = torch.where(here, previous, unchanged)  # a skipped token keeps the state it found
    state = score.argmax(dim=-1)
    tags = torch.empty((batch, tokens), dtype=torch.long)
    for t in range(tokens - 1, -1, -1):
        tags[:, t] = state
        state = back[:, t].gather(1, state[:, None]).squeeze(1)
    return torch.where(real, tags, OUTSIDE)


def real_tokens(offsets: torch.Tensor) -> torch.Tensor:
    """[batch, tokens] mask of tokens that cover text, from a [batch, tokens, 2] offset mapping."""
    return offsets[..., 1] > offsets[..., 0]
