"""nanoGPT's model in plain PyTorch (eager), the peer for the training benchmarks.

Learned positions, pre-LayerNorm, tanh-GELU, tied head, optional Linear biases; parameter
names equal to tinygpt's, so ``load_state_dict`` takes tinygpt's initial weights as they are.
Shared by ``bench_train_step.py`` and ``bench_train_baby_gpt.py``.
"""

from __future__ import annotations


def torch_gpt(torch, vocab_size, block_size, n_layer, n_head, n_embd, bias=True):
    nn, F = torch.nn, torch.nn.functional
    C, H = n_embd, n_head

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C, bias=bias)
            self.c_proj = nn.Linear(C, C, bias=bias)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C, bias=bias)
            self.c_proj = nn.Linear(4 * C, C, bias=bias)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C), Attention()
            self.ln_2, self.mlp = nn.LayerNorm(C), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, C), wpe=nn.Embedding(block_size, C),
                h=nn.ModuleList(Block() for _ in range(n_layer)), ln_f=nn.LayerNorm(C)))

        def forward(self, idx, targets):
            x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
            for block in self.transformer.h:
                x = block(x)
            logits = F.linear(self.transformer.ln_f(x), self.transformer.wte.weight)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    return GPT()


def adamw_like_tinygpt(torch, model, lr, betas, weight_decay):
    """torch AdamW with tinygpt's groups: decay the matrices, not embeddings, norms or biases."""
    embeddings = {"transformer.wte.weight", "transformer.wpe.weight"}

    def decays(name, p):
        return p.dim() >= 2 and name not in embeddings

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    rest = [p for n, p in model.named_parameters() if not decays(n, p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas)
