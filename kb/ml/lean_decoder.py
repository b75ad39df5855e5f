"""A lean decoder for Llama-family models (Llama, SmolLM, Qwen2): the per-token work without framework overhead.

transformers' generic forward pays ~10 ms of Python per token on a 30-layer model; here one token is
about 20 tensor ops per layer on packed weights and a preallocated KV cache. Weights feed the
matmuls in bf16 (or the checkpoint's float dtype); the residual stream, norms and attention stay in
fp32, which is both more exact and faster for CPU attention (bf16 batched matmuls are slow here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kb.ml.packed_linear import packed_linear

SUPPORTED_TYPES = ("llama", "qwen2")
CACHE_STEP = 256
REFINED_CANDIDATES = 16


def lean_decoder_supports(config: object) -> bool:
    """Whether this model's architecture is one the lean decoder computes exactly."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return (
        getattr(config, "model_type", None) in SUPPORTED_TYPES
        and getattr(config, "hidden_act", None) == "silu"
        and rope.get("rope_type", rope.get("type", "default")) == "default"
        and not getattr(config, "use_sliding_window", False)
        and not getattr(config, "mlp_bias", False)
    )


def _rope_theta(config: object) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


class _RMSNorm:
    """RMSNorm as x * w * sqrt(d) / hypot(||x||, sqrt(d * eps)): the same value in 4 kernels instead of 7 on CPU."""

    def __init__(self, weight: torch.Tensor, eps: float):
        width = weight.shape[0]
        self.scaled_weight = weight.detach().float() * width**0.5
        self.floor = torch.tensor((width * eps) ** 0.5)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.scaled_weight / torch.hypot(torch.linalg.vector_norm(x, dim=-1, keepdim=True), self.floor))


class _Layer:
    def __init__(self, layer: torch.nn.Module, bits: int, dtype: torch.dtype, eps: float, query_scale: float):
        attention, mlp = layer.self_attn, layer.mlp
        projections = (attention.q_proj, attention.k_proj, attention.v_proj)
        # attention's 1/sqrt(head_dim) is folded into the query rows (rotary is linear, so it commutes)
        factors = (query_scale, 1.0, 1.0)
        weights = [p.weight.detach() * factor for p, factor in zip(projections, factors)]
        biases = [p.bias.detach() * factor if p.bias is not None else None for p, factor in zip(projections, factors)]
        qkv_bias = torch.cat(biases) if all(b is not None for b in biases) else None
        self.qkv = packed_linear(torch.cat(weights), qkv_bias, bits, dtype)
        self.o = packed_linear(attention.o_proj.weight.detach(), None, bits, dtype)
        gate_up = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()])
        self.gate_up = packed_linear(gate_up, None, bits, dtype)
        self.down = packed_linear(mlp.down_proj.weight.detach(), None, bits, dtype)
        self.norm1 = _RMSNorm(layer.input_layernorm.weight, eps)
        self.norm2 = _RMSNorm(layer.post_attention_layernorm.weight, eps)


class LeanDecoder:
    """Decoder over a Llama-family transformers model, with weights packed to (layer_bits, embedding_bits)."""

    def __init__(self, model: torch.nn.Module, layer_bits: int = 16, embedding_bits: int = 16):
        config = model.config
        self.dtype = torch.bfloat16 if min(layer_bits, embedding_bits) < 16 else model.dtype
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.q_size, self.kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        inner = model.model
        eps = float(config.rms_norm_eps)
        self.layers = [_Layer(layer, layer_bits, self.dtype, eps, self.head_dim**-0.5) for layer in inner.layers]
        self.final_norm = _RMSNorm(inner.norm.weight, eps)
        head_weight = model.lm_head.weight.detach()
        self.lm_head = packed_linear(head_weight, None, embedding_bits, self.dtype)
        # the output matrix at 16 bits (as shipped, or float16), for the few rows recomputed each step (see _logits)
        half_precision = head_weight if head_weight.dtype in (torch.float16, torch.bfloat16) else head_weight.half()
        self.head_rows = half_precision if self.dtype != torch.float32 else None
        tied = head_weight.data_ptr() == inner.embed_tokens.weight.data_ptr()
        self.embeddings = inner.embed_tokens.weight.detach()
        if tied and self.head_rows is not None:
            self.embeddings = self.head_rows
        inverse = 1.0 / (
            _rope_theta(config) ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        )
        angles = torch.outer(torch.arange(config.max_position_embeddings, dtype=torch.float32), inverse)
        angles = torch.cat([angles, angles], dim=-1)
        # rotate_half(x) * sin == roll(x, half) * signed_sin: one roll instead of two slices, a neg and a cat
        half = self.head_dim // 2
        self.cos, self.signed_sin = angles.cos(), torch.cat([-angles[:, :half].sin(), angles[:, half:].sin()], dim=-1)
        # keys are stored transposed, (heads, dim, positions), so scores are a plain matmul without copies
        self.keys = torch.empty(len(self.layers), self.kv_heads, self.head_dim, 0)
        self.values = torch.empty(len(self.layers), self.kv_heads, 0, self.head_dim)
        self.layer_caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.length = 0

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings[ids].float()

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits for one position: all from the packed matrix, the likeliest few redone exactly.

        Packed weights and bf16 outputs (only ~0.1 apart near 25) can swap close rivals, e.g. SmolLM2's
        "The" and "L" for "What is the capital of France?", and flip greedy decoding; redoing the top
        candidates from float16 rows costs a few microseconds.
        """
        logits = self.lm_head(hidden.to(self.dtype))[0].float()
        if self.head_rows is not None:
            candidates = logits.topk(REFINED_CANDIDATES).indices
            logits[candidates] = self.head_rows[candidates].float() @ hidden[0]
        return logits

    def _reserve(self, length: int) -> None:
        capacity = self.values.shape[2]
        if length <= capacity:
            return
        size = min(-(-length // CACHE_STEP) * CACHE_STEP, self.cos.shape[0])
        keys = torch.zeros(len(self.layers), self.kv_heads, self.head_dim, size)
        values = torch.zeros(len(self.layers), self.kv_heads, size, self.head_dim)
        keys[..., : self.length] = self.keys[..., : self.length]
        values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values
        self.layer_caches = list(zip(keys.unbind(0), values.unbind(0)))

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(x * cos, torch.roll(x, self.head_dim // 2, dims=-1), signed_sin)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Attention of `count` new positions over the cache; (count, heads, dim) -> (count, heads * dim)."""
        count = q.shape[0]
        if count == 1:
            # one query row: plain matmuls beat the flash kernel several times over at long contexts
            grouped = q.view(self.kv_heads, self.heads // self.kv_heads, self.head_dim)
            scores = torch.matmul(grouped, keys)
            return torch.matmul(torch.softmax(scores, dim=-1), values).view(1, self.q_size)
        attended = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            keys.transpose(1, 2).unsqueeze(0),
            values.unsqueeze(0),
            is_causal=True,
            enable_gqa=True,
            scale=1.0,
        )
        return attended[0].transpose(0, 1).reshape(count, self.q_size)

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        count, start = ids.shape[0], self.length
        end = start + count
        self._reserve(end)
        cos, sin = self.cos[start:end, None], self.signed_sin[start:end, None]
        rotary_size, width, dtype = self.q_size + self.kv_size, self.cos.shape[-1], self.dtype
        x = self._embed(ids)
        for layer, (keys, values) in zip(self.layers, self.layer_caches):
            qkv = layer.qkv(layer.norm1(x).to(dtype)).float()
            rotated = self._rotate(qkv[:, :rotary_size].view(count, self.heads + self.kv_heads, width), cos, sin)
            keys[:, :, start:end] = rotated[:, self.heads :].permute(1, 2, 0)
            values[:, start:end] = qkv[:, rotary_size:].view(count, self.kv_heads, width).transpose(0, 1)
            attended = self._attend(rotated[:, : self.heads], keys[:, :, :end], values[:, :end])
            x = x + layer.o(attended.to(dtype))
            gate, up = layer.gate_up(layer.norm2(x).to(dtype)).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        self.length = end
        return self._logits(self.final_norm(x[-1:]))

    @torch.inference_mode()
    def start(self, token_ids: list[int]) -> torch.Tensor:
        """Prefill the prompt from an empty cache; returns the logits for the first new token."""
        self.length = 0
        return self._forward(torch.tensor(token_ids))

    @torch.inference_mode()
    def step(self, token_id: int) -> torch.Tensor:
        """Feed one token; returns the logits for the next."""
        return self._forward(torch.tensor([token_id]))
