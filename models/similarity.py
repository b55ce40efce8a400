"""The similarity head: a small projection from the frozen tagger trunk to a unit-norm embedding.

The tagging CNN (:class:`~onbeat.models.tagger.TagCNN`) ends its conv trunk in a map of
``channels[-1]`` channels × mel-band groups × frame groups. This head reads the same map, so the
live worker runs the trunk once per window for both the tags and the similarity embedding. It
pools the map (:func:`pool_trunk`) either as the tagger does (``global``: mean and max over time
and frequency) or keeping the frequency layout (``freq``: mean and standard deviation over time of
every channel and band group), then an MLP projects to a unit-norm vector.
It is trained with a contrastive objective (in-batch InfoNCE / NT-Xent: other windows and degraded
copies of the same track are positives, other tracks negatives; ``training/similarity.py``) and
never changes the tagger's own outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from onbeat.models.tagger_np import POOLS, SimilaritySpec
from torch import nn

__all__ = ["POOLS", "SimilarityHead", "SimilaritySpec", "load_head", "pool_trunk", "save_head"]


def pool_trunk(x: torch.Tensor, pool: str) -> torch.Tensor:
    """The head's input from a trunk map ``(batch, channels, bands, frames)``.

    ``global``: mean and max over bands and frames, ``(batch, 2 * channels)``; ``freq``: mean and
    standard deviation over frames per channel and band, ``(batch, 2 * channels * bands)``.
    """
    if pool == "global":
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
    if pool == "freq":
        std, mean = torch.std_mean(x, dim=3, correction=0)
        return torch.cat([mean.flatten(1), std.flatten(1)], dim=1)
    raise ValueError(f"unknown pooling {pool!r} (one of {POOLS})")


class SimilarityHead(nn.Module):
    """Pooled trunk features → unit-norm embedding (MLP: linear, layer norm, ReLU, linear).

    Parameters
    ----------
    spec : SimilaritySpec
        Shapes.
    """

    def __init__(self, spec: SimilaritySpec) -> None:
        super().__init__()
        self.spec = spec
        self.mlp = nn.Sequential(
            nn.Linear(spec.in_dim, spec.hidden),
            nn.LayerNorm(spec.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(spec.hidden, spec.dim),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of pooled trunk vectors, ``(batch, in_dim)`` → ``(batch, dim)``."""
        z: torch.Tensor = self.mlp(pooled)
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-9)

    def from_trunk(self, trunk_map: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of trunk maps (:meth:`TagCNN.trunk_map`), ``(batch, dim)``."""
        out: torch.Tensor = self(pool_trunk(trunk_map, self.spec.pool))
        return out


def save_head(
    head: SimilarityHead, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``NAME.safetensors`` (state dict, float16 to keep the file small) and ``NAME.json``
    (spec + model card data). Loading casts back to float32, so a saved head computes exactly
    what :func:`load_head` gives, not what the float32 ``head`` computed."""
    from onbeat.models.tagger import save_module

    return save_module(head, head.spec, directory, extra, half=True)


def load_head(path: str | Path) -> tuple[SimilarityHead, dict[str, Any]]:
    """Load a head saved by :func:`save_head` (eval mode) and its metadata.

    Parameters
    ----------
    path : path
        The ``.safetensors`` file; its ``.json`` sits beside it.
    """
    from safetensors.torch import load_file

    p = Path(path)
    meta = json.loads(p.with_suffix(".json").read_text())
    head = SimilarityHead(SimilaritySpec.from_json(meta["spec"]))
    head.load_state_dict({k: v.float() for k, v in load_file(str(p)).items()})
    head.eval()
    return head, meta
