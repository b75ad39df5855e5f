"""Segmentation for full-text search: Chinese with jieba and a per-dataset user dictionary."""

from __future__ import annotations

from kb.db.textsearch import normalise_dictionary, segment, segment_query, tokenizer_for


def test_index_form_keeps_long_words_and_their_parts():
    words = segment("他在上海交通大学读书").split()
    assert {"上海交通大学", "上海", "交通", "大学"} <= set(words)


def test_query_form_splits_a_long_word_without_a_dictionary():
    assert {"上海", "交通", "大学"} <= set(segment_query("上海交通大学在哪里").split())


def test_a_dictionary_word_stays_one_word_in_the_query():
    words = segment_query("上海交通大学在哪里", ["上海交通大学"]).split()
    assert "上海交通大学" in words
    assert not {"上海", "交通", "大学"} & set(words)


def test_a_domain_term_jieba_splits_becomes_one_word_with_the_dictionary():
    assert "向量数据库" not in segment("向量数据库的索引").split()
    assert "向量数据库" in segment("向量数据库的索引", ["向量数据库"]).split()
    assert segment_query("向量数据库的索引", ["向量数据库"]).split()[0] == "向量数据库"


def test_dictionaries_do_not_leak_between_datasets():
    segment("向量数据库", ["向量数据库"])
    assert "向量数据库" not in segment("向量数据库").split()
    assert tokenizer_for([]) is tokenizer_for(["", "english only"]), "words without Chinese change nothing"


def test_chinese_question_words_are_dropped_from_queries():
    words = segment_query("乍都节公园位于什么地方？").split()
    assert "什么" not in words and "公园" in words


def test_english_and_mixed_text_are_left_to_postgres_and_full_width_forms_normalised():
    assert segment("Running dogs") == "Running dogs"
    mixed = segment_query("ＧＰＴ４模型是什么")
    assert "GPT4" in mixed and "模型" in mixed


def test_dictionary_is_normalised_to_unique_chinese_words():
    assert normalise_dictionary([" 上海交通大学 ", "上海交通大学", "", "pgvector", 3]) == ("上海交通大学",)
