"""Linear layers whose weights stay at the precision they were shipped in (4-bit, 8-bit or float) on CPU.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth: 4-bit
weights are read four times faster than bf16. torch ships the CPU kernels; this module packs for them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INT4_GROUP = 32  # GGUF's Q4 block size, so requantising a Q4 file keeps its grid
GEMM_ROWS = 16  # from this many rows on, unpacking to bf16 and one GEMM beats the int4 kernel


class DenseLinear:
    """y = x W^T + b with ordinary float weights."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        self.weight = weight.to(dtype).contiguous()
        self.bias = bias.to(dtype) if bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (rows, in_features) in the weights' dtype."""
        return F.linear(x, self.weight, self.bias)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Some output rows of the weights, as float32."""
        return self.weight[ids].float()


class Int8Linear:
    """Weights as int8 with one scale per output row; activations bf16."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        weight = weight.float()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-10)
        self.weight = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.scales = scales.to(torch.bfloat16)  # what the kernel takes with bf16 input
        self.exact_scales = scales
        self.bias = bias.to(torch.bfloat16) if bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (rows, in_features) bf16."""
        y = torch._weight_int8pack_mm(x, self.weight, self.scales)
        return y + self.bias if self.bias is not None else y

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Some output rows of the weights, dequantised to float32 (e.g. a tied embedding lookup)."""
        return self.weight[ids].float() * self.exact_scales[ids, None]


class Int4Linear:
    """Weights as 4-bit integers with a scale and offset per group of 32 inputs; activations bf16.

    One row at a time (decoding) goes through torch's int4 kernel. Many rows at once (reading a prompt)
    are compute-bound, where that kernel is ~3x slower than a bf16 GEMM, so the weights are then
    unpacked to bf16 for the one call from a second, plain nibble copy (+50% of the packed size).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        out_features, in_features = weight.shape
        groups = weight.float().reshape(out_features, in_features // INT4_GROUP, INT4_GROUP)
        low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
        scale = ((high - low) / 15.0).clamp(min=1e-10)
        levels = torch.round((groups - low) / scale).clamp(0, 15).to(torch.uint8)
        # the kernel computes (q - 8) * scale + zero, so zero is the value of level 8
        zero = low + 8.0 * scale
        self.scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        self.weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            levels.view(out_features, -1).to(torch.int32), 2
        )
        self.nibbles = (levels[..., 0::2] | (levels[..., 1::2] << 4)).contiguous()
        self.scale, self.low = scale, low
        self.bias = bias.to(torch.bfloat16) if bias is not None else None

    def rows(self, ids: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Some output rows of the weights (all by default), dequantised to float32."""
        nibbles, low, scale = self.nibbles[ids], self.low[ids], self.scale[ids]
        levels = torch.stack([nibbles & 15, nibbles >> 4], dim=-1).view(*low.shape[:2], INT4_GROUP)
        return torch.addcmul(low, levels.float(), scale).view(low.shape[0], -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (rows, in_features) bf16."""
        if x.shape[0] >= GEMM_ROWS:
            return F.linear(x, self.rows().to(torch.bfloat16), self.bias)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.weight, INT4_GROUP, self.scales_and_zeros)
        return y + self.bias if self.bias is not None else y


def packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, bits: int, dtype: torch.dtype) -> object:
    """The leanest linear layer for these weights at `bits` precision (16 means keep floats in `dtype`)."""
    if bits == 4 and weight.shape[1] % INT4_GROUP == 0:
        return Int4Linear(weight, bias)
    if bits <= 8:
        return Int8Linear(weight, bias)
    return DenseLinear(weight, bias, dtype)
