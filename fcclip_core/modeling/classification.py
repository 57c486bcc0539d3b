"""Open-vocabulary classification of CLIP-space embeddings, and the in/out-vocabulary ensemble.

A vocabulary class may have several names (synonyms); each synonym has one text-embedding
row. A query's class logit is the best cosine similarity over the class's synonyms, scaled by
CLIP's temperature (capped at 100); a learned "void" embedding is the last row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from fcclip_core.precision import float32_island


@dataclass(frozen=True)
class TextClassifier:
    """Synonym embedding rows plus the void row, and which rows belong to which class.

    ``weights`` [S + 1, E]: L2-normalised synonym rows in class order, the void row last.
    ``synonym_index`` [K, M]: the rows of each class, padded by repeating the class's first row
    (a repeated row cannot change a maximum). ``seen`` [K] bool: classes named in the training
    vocabulary (they get the smaller out-of-vocabulary ensemble weight).
    """

    weights: torch.Tensor
    synonym_index: torch.Tensor
    seen: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.synonym_index.shape[0])

    @classmethod
    def build(
        cls,
        embeddings: torch.Tensor,
        synonym_counts: Sequence[int] | torch.Tensor,
        seen: Sequence[bool] | torch.Tensor,
        void_embedding: torch.Tensor,
    ) -> "TextClassifier":
        """``embeddings`` [S, E] (one row per synonym), ``synonym_counts`` [K] summing to S,
        ``seen`` [K], ``void_embedding`` [1, E] (normalised here)."""
        counts = [int(c) for c in (synonym_counts.tolist() if torch.is_tensor(synonym_counts) else synonym_counts)]
        if embeddings.ndim != 2:
            raise ValueError(f"text embeddings must be [S, E], got {tuple(embeddings.shape)}")
        if not counts or min(counts) < 1:
            raise ValueError(f"every class needs at least one synonym row, got counts {counts}")
        if sum(counts) != embeddings.shape[0]:
            raise ValueError(f"synonym counts sum to {sum(counts)} but there are {embeddings.shape[0]} rows")
        if embeddings.shape[1] != void_embedding.shape[-1]:
            raise ValueError(
                f"text embedding dim {embeddings.shape[1]} differs from the model's {void_embedding.shape[-1]}")
        seen_t = torch.as_tensor(seen, device=embeddings.device).reshape(-1).bool()
        if seen_t.numel() != len(counts):
            raise ValueError(f"seen mask has {seen_t.numel()} entries for {len(counts)} classes")
        width = max(counts)
        rows, start = [], 0
        for count in counts:
            members = list(range(start, start + count))
            rows.append(members + [start] * (width - count))
            start += count
        index = torch.tensor(rows, dtype=torch.long, device=embeddings.device)
        void = F.normalize(void_embedding.detach().reshape(1, -1), dim=-1).to(embeddings.dtype)
        return cls(weights=torch.cat([embeddings, void], 0), synonym_index=index, seen=seen_t)


def classification_logits(features: torch.Tensor, classifier: TextClassifier, logit_scale: torch.Tensor) -> torch.Tensor:
    """Logits [..., K + 1] (void last) of embeddings ``features`` [..., E], in float32 even
    under autocast: at scale 100 a bf16 cosine (3 significant digits) would move logits by ~0.4."""
    with float32_island(features.device):
        x = F.normalize(features.float(), dim=-1)
        scale = torch.clamp(logit_scale.float().exp(), max=100)
        row_logits = (scale * x) @ classifier.weights.float().T  # [..., S + 1]
    per_class = row_logits[..., classifier.synonym_index].amax(-1)  # [..., K]
    return torch.cat([per_class, row_logits[..., -1:]], -1)


@dataclass
class EnsembleResult:
    in_vocab_probs: torch.Tensor  # [B, Q, K] softmax of the in-vocabulary logits (void removed)
    out_vocab_probs: torch.Tensor  # [B, Q, K] softmax of the out-of-vocabulary logits (void removed)
    ensemble_logits: torch.Tensor  # [B, Q, K] log of the geometric mean
    is_void_prob: torch.Tensor  # [B, Q, 1] in-vocabulary probability of void
    mask_cls_probs: torch.Tensor  # [B, Q, K + 1] class probabilities (scaled by 1 - void) + void
    mask_cls_logprobs: torch.Tensor  # [B, Q, K + 1] log(mask_cls_probs + 1e-8)


def geometric_ensemble(
    in_vocab_logits: torch.Tensor,
    out_vocab_logits: torch.Tensor,
    seen: torch.Tensor,
    alpha: float,
    beta: float,
    valid_queries: Optional[torch.Tensor] = None,
) -> EnsembleResult:
    """FC-CLIP's ensemble: p_in^(1-w) * p_out^w with w = alpha for seen, beta for unseen classes.

    ``valid_queries`` [B, Q] (optional) limits the out-of-vocabulary part to those queries
    (w = 0 elsewhere). The void probability of the in-vocabulary classifier then scales the
    ensembled class distribution, and void is appended as the last class.
    """
    in_probs = in_vocab_logits[..., :-1].softmax(-1)
    out_probs = out_vocab_logits[..., :-1].softmax(-1)
    seen = seen.to(device=in_probs.device).bool()
    if valid_queries is None:
        seen_part = (in_probs ** (1 - alpha) * out_probs ** alpha).log()
        unseen_part = (in_probs ** (1 - beta) * out_probs ** beta).log()
    else:
        valid = valid_queries.to(in_probs.dtype).unsqueeze(-1)
        w_seen, w_unseen = alpha * valid, beta * valid
        seen_part = (in_probs ** (1 - w_seen) * out_probs ** w_seen).log()
        unseen_part = (in_probs ** (1 - w_unseen) * out_probs ** w_unseen).log()
    ensemble = torch.where(seen, seen_part, unseen_part)
    is_void = in_vocab_logits.softmax(-1)[..., -1:]
    probs = torch.cat([ensemble.softmax(-1) * (1.0 - is_void), is_void], -1)
    return EnsembleResult(
        in_vocab_probs=in_probs,
        out_vocab_probs=out_probs,
        ensemble_logits=ensemble,
        is_void_prob=is_void,
        mask_cls_probs=probs,
        mask_cls_logprobs=torch.log(probs + 1e-8),
    )
