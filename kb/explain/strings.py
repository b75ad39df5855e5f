"""Words for the /learn page, the SVG legends and `kb explain`, in English and Simplified Chinese.

Values are `str.format` templates; the named fields they use are filled by `kb.explain.present.explain_texts`.
"""

from __future__ import annotations

LANGUAGES = ("en", "zh")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "How a language model works",
        "sentence_gap": " ",
        "intro": (
            "This toy language model knows two tokens, 0 and 1, and looks only at the last {context} tokens: its context."
            " There are {states} such contexts. For each one the model, a small GPT-style transformer with {parameters:,}"
            " parameters, gives the probability of the next token. Appending that token on the right and dropping the"
            " leftmost one leads to a new context, so the whole model is a Markov chain: {states} states with 2 arrows"
            " each. Training on a sequence changes how thick the arrows are."
        ),
        "graph_before": "Before training",
        "graph_after": "After {steps:,} training steps",
        "plot_title": "Training: loss and two transition probabilities",
        "sample_caption": "Generated from {start} by following the trained arrows, next to the training sequence:",
        "sample_label": "generated",
        "data_label": "training data",
        "why_title": "Why it can never be perfect",
        "why_not_perfect": (
            "The model sees only the last {context} tokens. When the same context is followed by 1 in one place of the"
            " data and by 0 in another, those tokens cannot tell which comes next, so the best any model with this"
            " context can do is to match the data's frequencies. Training moves the probabilities toward exactly those"
            " frequencies and the loss toward its floor: the uncertainty left in the data, which no amount of training"
            " removes. More steps bring the numbers closer to the frequencies, not past them. Contexts the data never"
            " shows get no training signal; their arrows say whatever the shared weights happen to imply."
        ),
        "ambiguous": "Ambiguous contexts in this sequence: {items}. The best the model can do is to give 1 exactly these frequencies.",
        "ambiguous_item": "{state} → 1 in {ones} of {total} cases ({p:.0%})",
        "list_separator": "; ",
        "no_ambiguity": "In this sequence every context that occurs has only one possible next token, so the model can become nearly certain on the states the data visits.",
        "real_title": "From this toy to real models, and to kb",
        "real_models": (
            "Real language models work the same way at a vastly larger scale: a vocabulary of about 50,000 tokens"
            " (pieces of words) instead of 2, and a context of thousands of tokens instead of 3. Their states are far too"
            " many to draw, but every step is the same: read the context, give a probability to every possible next"
            " token, pick one, append it, slide the window. Training still pulls those probabilities toward the"
            " frequencies in the training text, and the model still knows only what is in its context and what it"
            " absorbed in training. That is where kb comes in: when you ask a question, retrieval finds the passages of"
            " your documents that answer it and puts them into the context, so the next-token probabilities are"
            " conditioned on the right text instead of on guesses."
        ),
        "header": "Tiny GPT ({parameters:,} parameters), {steps:,} training steps on {sequence} ({length:,} tokens)",
        "table_caption": "P(next token = 1 | state)",
        "table_state": "state",
        "table_before": "before",
        "table_after": "after",
        "table_data": "data",
        "never_seen": "never seen",
        "seen_count": "{ones} of {total}",
        "loss_line": "loss {first:.3f} -> {last:.3f} (lowest possible {floor:.3f})",
        "svg_next_1": "next token 1",
        "svg_next_0": "next token 0",
        "svg_thickness": "thickness and label = probability",
        "svg_unseen": "dashed = never seen in the data",
        "svg_loss": "loss",
        "svg_loss_floor": "lowest possible loss",
        "svg_probability": "probability",
        "svg_step": "training step",
        "svg_data_dashed": "dashed = the data's frequency",
    },
    "zh": {
        "title": "语言模型是怎样工作的",
        "sentence_gap": "",
        "intro": (
            "这个玩具语言模型只认识两个词元（token）：0 和 1，并且只看最后 {context} 个词元，也就是它的上下文。"
            "这样的上下文共有 {states} 种。对每一种，模型（一个有 {parameters:,} 个参数的小型 GPT 式 Transformer）"
            "给出下一个词元的概率。把这个词元接在右边、去掉最左边的一个，就到了新的上下文，所以整个模型就是一个"
            "马尔可夫链：{states} 个状态，每个状态两条出边。在一段序列上训练，改变的就是这些箭头的粗细。"
        ),
        "graph_before": "训练前",
        "graph_after": "训练 {steps:,} 步后",
        "plot_title": "训练过程：损失和两个转移概率",
        "sample_caption": "训练后从 {start} 出发、沿着箭头生成的序列，与训练序列对比：",
        "sample_label": "生成",
        "data_label": "训练数据",
        "why_title": "为什么它永远不可能完美",
        "why_not_perfect": (
            "模型只看最后 {context} 个词元。如果同一个上下文在数据里有的地方后面跟 1、有的地方跟 0，仅凭这几个词元"
            "无法判断下一个是什么，任何只看这么长上下文的模型最多只能做到与数据中的频率一致。训练把概率推向的正是"
            "这些频率，把损失推向它的下限：数据本身留下的不确定性，训练再久也消除不了。步数越多，数字越接近这些频率，"
            "但不会越过它们。数据中从未出现的上下文得不到任何训练信号，它们的箭头只是共享权重碰巧给出的结果。"
        ),
        "ambiguous": "这段序列中有歧义的上下文：{items}。模型最多只能让下一个词元为 1 的概率恰好等于这些频率。",
        "ambiguous_item": "{state} → 1 出现在 {total} 次中的 {ones} 次（{p:.0%}）",
        "list_separator": "；",
        "no_ambiguity": "在这段序列中，每个出现过的上下文后面只有一种可能的词元，所以模型在数据经过的状态上可以变得几乎确定。",
        "real_title": "从玩具到真实模型，再到 kb",
        "real_models": (
            "真实的语言模型工作方式完全相同，只是规模大得多：词表约有 5 万个词元（词或词的片段）而不是 2 个，"
            "上下文有几千个词元而不是 3 个。它们的状态多到无法画出，但每一步都一样：读入上下文，为每个可能的下一个"
            "词元给出概率，选出一个，接在后面，窗口向前滑动。训练同样把这些概率拉向训练文本中的频率；模型也同样只"
            "知道上下文里的内容和训练中学到的东西。这正是 kb 的作用：你提问时，检索从你的文档中找出能回答问题的段落，"
            "把它们放进上下文，于是下一个词元的概率以正确的文本为条件，而不是靠猜测。"
        ),
        "header": "小型 GPT（{parameters:,} 个参数），在 {sequence}（{length:,} 个词元）上训练 {steps:,} 步",
        "table_caption": "P(下一个词元 = 1 | 状态)",
        "table_state": "状态",
        "table_before": "训练前",
        "table_after": "训练后",
        "table_data": "数据",
        "never_seen": "未出现",
        "seen_count": "{total} 次中 {ones} 次",
        "loss_line": "损失 {first:.3f} -> {last:.3f}（最低可能值 {floor:.3f}）",
        "svg_next_1": "下一个词元为 1",
        "svg_next_0": "下一个词元为 0",
        "svg_thickness": "粗细和标注 = 概率",
        "svg_unseen": "虚线 = 数据中未出现",
        "svg_loss": "损失",
        "svg_loss_floor": "最低可能损失",
        "svg_probability": "概率",
        "svg_step": "训练步数",
        "svg_data_dashed": "虚线 = 数据中的频率",
    },
}


def resolve_language(lang: str | None) -> str:
    """Map a language tag (zh, zh-CN, zh-Hans, en-US, None...) to one we have words for."""
    return "zh" if (lang or "").lower().startswith("zh") else "en"
