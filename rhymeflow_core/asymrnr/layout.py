"""How a family's video self-attention calls look to the attention override: the token layout.

Why a separate object: the override sees only ``q, k, v`` and ``transformer_options``; it must tell video
self-attention apart from cross-attention, text refiners and anything else, find the video rows inside a
joint sequence, and know which block it is in. That knowledge is each family's, so every family adapter
(``adapters/<family>.py``, ``token_layout``) builds one of these; the override reads nothing else.

- ``patch_size``: latent ``(T, H, W)`` -> token grid ``ceil(n / p)`` per axis (frame-major token order).
- ``joint_text``: self-attention runs on ``[video rows; text rows]`` (HunyuanVideo, Mochi); text rows are
  always kept whole and never matched with video rows. Otherwise every row is a video row (Wan, LTX-Video).
- ``block_of``: the block of a call read from ``transformer_options`` (``None`` from it: not inside a
  block, pass through); ``block_of`` itself ``None``: the n-th video self-attention call of a DiT call is
  block n (families that set no block index: Mochi, LTX-Video).
- ``token_kwargs``: model-call inputs that add tokens outside the latent's grid, with the reason each
  cannot be reduced soundly; a call carrying one is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

BlockOf = Callable[[dict], "int | None"]


def from_block_index(to: dict) -> int | None:
    """``transformer_options["block_index"]`` (Wan and the test bed set it inside every block)."""
    index = to.get("block_index")
    return None if index is None else int(index)


@dataclass(frozen=True)
class TokenLayout:
    family: str
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_blocks: int | None = None  # self-attention calls per DiT call = schedule rows
    joint_text: bool = False
    block_of: BlockOf | None = from_block_index
    token_kwargs: dict[str, str] = field(default_factory=dict)

    def grid(self, latent_shape) -> tuple[int, int, int]:
        """The token grid of a latent ``[B, C, T, H, W]``."""
        return tuple(-(-int(n) // int(p)) for n, p in zip(tuple(latent_shape)[2:], self.patch_size))

    def check_call(self, kwargs: dict) -> None:
        """Refuse a model call with inputs that add tokens the schedule and the grid know nothing of."""
        for name, reason in self.token_kwargs.items():
            if kwargs.get(name) is not None:
                raise ValueError(f"AsymRnR: this {self.family} call has '{name}' ({reason}); token reduction cannot run on "
                                 "it soundly; remove AsymRnR Token Reduction from this graph or drop that conditioning")


TESTBED_LAYOUT = TokenLayout("wan")  # the test bed: Wan's layout with Wan 2.1's (1, 2, 2) patches
