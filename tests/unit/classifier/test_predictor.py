import numpy as np

from textlstm.classifier.predictor import EMPTY_TEXT_ERROR, Classifier


def test_predict_shape_order_and_probabilities(tiny_classifier: Classifier) -> None:
    texts = ["goal striker cup", "bank bond shares", "genome lab cells"] * 7
    preds = tiny_classifier.predict(texts, batch_size=4)
    assert [p.label for p in preds[:3]] == ["sports", "finance", "science"]
    for pred in preds:
        assert pred.error is None
        assert set(pred.probabilities) == set(tiny_classifier.labels)
        assert abs(sum(pred.probabilities.values()) - 1.0) < 1e-5
        assert pred.score == max(pred.probabilities.values())
    # batch size and bucketing never change results or their order (beyond float rounding)
    again = list(reversed(tiny_classifier.predict(list(reversed(texts)), batch_size=128)))
    assert [p.label for p in again] == [p.label for p in preds]
    for a, b in zip(again, preds, strict=True):
        for label in tiny_classifier.labels:
            assert abs(a.probabilities[label] - b.probabilities[label]) < 1e-6


def test_blank_text_gets_an_error_and_neighbours_are_unaffected(
    tiny_classifier: Classifier,
) -> None:
    alone = tiny_classifier.predict(["goal striker cup"])[0]
    preds = tiny_classifier.predict(["", "goal striker cup", " \t\n"])
    assert preds[0].label is None and preds[0].error == EMPTY_TEXT_ERROR
    assert preds[2].label is None and preds[2].probabilities == {}
    assert preds[1].label == alone.label
    assert abs(preds[1].score - alone.score) < 1e-6  # type: ignore[operator]
    assert np.isnan(tiny_classifier.predict_proba([""])).all()


def test_long_text_is_truncated_to_max_length(tiny_classifier: Classifier) -> None:
    head = " ".join(["goal"] * tiny_classifier.max_length)
    long_text = head + " bank" * 5000
    pred = tiny_classifier.predict([long_text])[0]
    assert pred.truncated
    expected = tiny_classifier.predict([head])[0]
    assert pred.label == expected.label
    assert abs(pred.score - expected.score) < 1e-6  # type: ignore[operator]


def test_timings_split_tokenizing_from_the_network_and_accumulate(
    tiny_classifier: Classifier,
) -> None:
    timings: dict[str, float] = {"tokenize_s": 1.0}
    plain = tiny_classifier.predict(["goal striker cup"] * 50)
    timed = tiny_classifier.predict(["goal striker cup"] * 50, timings=timings)
    assert [p.label for p in timed] == [p.label for p in plain]
    assert timings["tokenize_s"] > 1.0  # added to what was there
    assert 0.0 < timings["forward_s"] < 60.0
