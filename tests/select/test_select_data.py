from pathlib import Path

import numpy as np
import pytest

from rayapp.select.data import MultiLabelDataError, read_arff, read_multilabel_csv, semi_supervised_split

MULAN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mulan"
needs_mulan = pytest.mark.skipif(not MULAN.is_dir(), reason="../shared/data/mulan is absent")

ARFF_LAST = """@relation toy
% a comment
@attribute 'feat one' numeric
@attribute f2 REAL
@attribute happy {0,1}
@attribute sad {0,1}
@data
1.5,2,1,0
-1,0.25,0,1
"""

ARFF_FIRST = """@relation 'toy-weka.filters.unsupervised.attribute.Reorder-R3-4,1-2'
@attribute L1 {0,1}
@attribute L2 {0,1}
@attribute a numeric
@attribute b numeric
@data
0,1,3.0,4.0
1,1,5.0,6.0
"""


def test_arff_label_columns_found_last_and_first(tmp_path):
    (tmp_path / "a.arff").write_text(ARFF_LAST)
    d = read_arff(tmp_path / "a.arff")
    assert d.feature_names == ["feat one", "f2"] and d.label_names == ["happy", "sad"]
    np.testing.assert_array_equal(d.X, [[1.5, 2], [-1, 0.25]])
    np.testing.assert_array_equal(d.Y, [[1, 0], [0, 1]])
    (tmp_path / "b.arff").write_text(ARFF_FIRST)
    d = read_arff(tmp_path / "b.arff")
    assert d.label_names == ["L1", "L2"] and d.feature_names == ["a", "b"]
    np.testing.assert_array_equal(d.X, [[3, 4], [5, 6]])
    np.testing.assert_array_equal(d.Y, [[0, 1], [1, 1]])


@pytest.mark.parametrize("row, match", [("?,2,1,0", r"a.arff:10: column 1 is '\?'"), ("1,2,1", "3 values, expected 4"),
                                        ("1,2,2,0", "a.arff:10: label 'happy' is 2 \\(labels must be 0 or 1"),
                                        ("nan,2,1,0", "a.arff:10: feature 'feat one' is nan")])
def test_arff_bad_rows_name_the_line(tmp_path, row, match):
    (tmp_path / "a.arff").write_text(ARFF_LAST + row + "\n")
    with pytest.raises(MultiLabelDataError, match=match):
        read_arff(tmp_path / "a.arff")


def test_arff_without_labels_or_with_other_nominals_is_an_error(tmp_path):
    (tmp_path / "a.arff").write_text("@relation r\n@attribute a numeric\n@data\n1\n")
    with pytest.raises(MultiLabelDataError, match="no \\{0,1\\} label attribute"):
        read_arff(tmp_path / "a.arff")
    (tmp_path / "b.arff").write_text("@relation r\n@attribute a {x,y}\n@attribute l {0,1}\n@data\nx,1\n")
    with pytest.raises(MultiLabelDataError, match="attribute 'a' is nominal"):
        read_arff(tmp_path / "b.arff")


def test_csv_labels_by_position(tmp_path):
    (tmp_path / "a.csv").write_text("0.5,1.5,1,0\n2.5,3.5,0,1\n\n")
    last = read_multilabel_csv(tmp_path / "a.csv", n_labels=2)
    np.testing.assert_array_equal(last.X, [[0.5, 1.5], [2.5, 3.5]])
    np.testing.assert_array_equal(last.Y, [[1, 0], [0, 1]])
    (tmp_path / "b.csv").write_text("1,0.5,1.5\n0,2.5,3.5\n")
    first = read_multilabel_csv(tmp_path / "b.csv", n_labels=1, label_position="first")
    np.testing.assert_array_equal(first.Y, [[1], [0]])
    with pytest.raises(MultiLabelDataError, match="a.csv:1: label 'label0' is 1.5"):
        read_multilabel_csv(tmp_path / "a.csv", n_labels=3)
    with pytest.raises(MultiLabelDataError, match="cannot hold 4 labels"):
        read_multilabel_csv(tmp_path / "a.csv", n_labels=4)


def test_semi_supervised_split_partitions_the_rows():
    lab, unl, test = semi_supervised_split(100, 0.2, test_ratio=0.3, seed=3)
    assert len(test) == 30 and len(lab) == 14 and len(unl) == 56
    assert len(np.unique(np.concatenate([lab, unl, test]))) == 100
    again = semi_supervised_split(100, 0.2, test_ratio=0.3, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((lab, unl, test), again))
    with pytest.raises(ValueError, match="labelled_ratio"):
        semi_supervised_split(100, 0.0)


@needs_mulan
def test_mulan_files_read_with_published_statistics():
    emo = read_arff(MULAN / "emotions.arff")
    assert emo.shape == (593, 72, 6) and emo.label_names[0] == "amazed-suprised"
    assert emo.Y.sum(1).mean() == pytest.approx(1.868, abs=1e-3)
    yeast = read_arff(MULAN / "yeast.arff")  # labels come first in this file
    assert yeast.shape == (2417, 103, 14) and yeast.label_names[0] == "Class1" and yeast.feature_names[0] == "Att1"
    assert yeast.Y.sum(1).mean() == pytest.approx(4.237, abs=1e-3)
    train = read_multilabel_csv(MULAN / "yeast-train.csv", n_labels=14)
    assert train.shape == (1500, 103, 14) and train.Y.sum(1).mean() == pytest.approx(4.228, abs=1e-3)
