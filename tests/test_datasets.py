"""Data-set readers on tiny files written in each set's native layout (labels only; no images needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from redaes_lite.errors import RedaesError
from redaes_lite.eval import datasets as ds
from redaes_lite.eval.matfile import load_mat
from redaes_lite.eval.tables import read_rows


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _names(d: ds.Dataset) -> list[str]:
    return [r.path.name for r in d.records]


def test_ava_mean_of_vote_counts_challenge_groups_and_test_list(tmp_path: Path) -> None:
    _write(
        tmp_path / "AVA.txt",
        "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n"
        "2 953958 10 7 15 26 26 21 10 8 1 2 1 21 1396\n"
        "3 954184 0 0 0 0 0 0 0 0 0 4 0 0 1397\n",
    )
    (tmp_path / "images").mkdir()
    _write(tmp_path / "aesthetics_image_lists" / "generic_test.jpgl", "953958\n954184\n")
    everything = ds.read_dataset("ava", tmp_path, split="all")
    assert _names(everything) == ["953619.jpg", "953958.jpg", "954184.jpg"]
    votes = np.array([0, 1, 5, 17, 38, 36, 15, 6, 5, 1])
    assert everything.records[0].label == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum())
    assert everything.records[2].label == 10.0
    assert [r.group for r in everything.records] == ["1396", "1396", "1397"]
    # The default split is the test list; a user's own list (e.g. NIMA/MUSIQ's) overrides it.
    assert _names(ds.read_dataset("ava", tmp_path)) == ["953958.jpg", "954184.jpg"]
    own = _write(tmp_path / "musiq_test.txt", "953619.jpg\n")
    assert _names(ds.read_dataset("ava", tmp_path, id_list=own)) == ["953619.jpg"]


def test_koniq_official_sets_and_scores_file(tmp_path: Path) -> None:
    header = '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore","set"\n'
    _write(
        tmp_path / "koniq10k_distributions_sets.csv",
        header
        + '"10004473376.jpg",0,0,25,73,7,105,3.828571,0.527, 77.383,"training"\n'
        + '"10007357496.jpg",0,3,45,47,1,96,3.479167,0.580, 68.132,"test"\n'
        + '"10007903636.jpg",1,0,20,73,2,96,3.78125,0.561, 74.582,"validation"\n',
    )
    (tmp_path / "512x384").mkdir()
    test = ds.read_dataset("KonIQ-10k", tmp_path)
    assert _names(test) == ["10007357496.jpg"] and test.records[0].label == pytest.approx(3.479167)
    assert test.records[0].path.parent.name == "512x384"
    assert len(ds.read_dataset("koniq10k", tmp_path, split="all").records) == 3


def test_spaq_reads_the_excel_workbook(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    sheet = wb.active
    sheet.append(["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"])
    sheet.append(["00001.jpg", 42.0, 43, 45.5, 30, 50, 44])
    sheet.append(["00002.jpg", 71.25, 60, 62, 70, 65, 72])
    (tmp_path / "Annotations").mkdir()
    wb.save(tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx")
    (tmp_path / "TestImage").mkdir()
    spaq = ds.read_dataset("spaq", tmp_path)
    assert _names(spaq) == ["00001.jpg", "00002.jpg"]
    assert [r.label for r in spaq.records] == [42.0, 71.25]


def test_xlsx_reader_handles_gaps_and_inline_text(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    wb.active.title = "scores"
    wb.active["A1"], wb.active["C1"] = "name", "value"
    wb.active["A2"], wb.active["C2"] = "x.jpg", 1.5
    wb.create_sheet("other")["A1"] = "ignored"
    wb.save(tmp_path / "t.xlsx")
    assert read_rows(tmp_path / "t.xlsx") == [{"name": "x.jpg", "": "", "value": "1.5"}]


def test_tad66k_para_biq2021_tables(tmp_path: Path) -> None:
    tad = tmp_path / "tad"
    _write(tad / "labels" / "merge" / "test.csv", "image,score\n1000.jpg,5.4\n1001.jpg,6.9\n")
    (tad / "TAD66K").mkdir()
    assert [r.label for r in ds.read_dataset("tad66k", tad).records] == [5.4, 6.9]

    para = tmp_path / "para"
    _write(
        para / "annotation" / "PARA-GiaaTest.csv",
        "imageName,sessionId,semantic,aestheticScore_1.0,aestheticScore_mean\n"
        "iaa_pub1_.jpg,session1,portrait,0,3.2\niaa_pub71_.jpg,session2,scene,0,2.8\n",
    )
    (para / "imgs").mkdir()
    recs = ds.read_dataset("para", para).records
    assert [r.path.relative_to(para).as_posix() for r in recs] == [
        "imgs/session1/iaa_pub1_.jpg",
        "imgs/session2/iaa_pub71_.jpg",
    ]
    assert [r.group for r in recs] == ["portrait", "scene"]

    biq = tmp_path / "biq"
    _write(biq / "Test.csv", "Image Name,MOS\nss03 (7805).jpg,0.70609\nss01 (151).jpg,0.18621\n")
    (biq / "Images").mkdir()
    assert _names(ds.read_dataset("biq2021", biq)) == ["ss03 (7805).jpg", "ss01 (151).jpg"]


def test_aadb_and_flickr_aes_whitespace_lists(tmp_path: Path) -> None:
    _write(
        tmp_path / "imgListFiles_label" / "imgListTestNewRegression_score.txt",
        "farm1_255_19452343093_8ee7e5e375_b.jpg 0.35\nfarm1_258_19527046616_a20bd2c8b4_b.jpg 0.7\n",
    )
    (tmp_path / "AADB_newtest_originalSize").mkdir()
    aadb = ds.read_dataset("aadb", tmp_path)
    assert [r.label for r in aadb.records] == [0.35, 0.7]
    assert aadb.records[0].path.parent.name == "AADB_newtest_originalSize"

    _write(tmp_path / "FLICKR-AES_image_score.txt", " farm1_262_20.jpg 3.2\nfarm1_263_21.jpg 2.4\n")
    (tmp_path / "40K").mkdir()
    assert _names(ds.read_dataset("flickr-aes", tmp_path)) == ["farm1_262_20.jpg", "farm1_263_21.jpg"]


@pytest.mark.parametrize("compress", [False, True])
def test_livec_mat_files_without_scipy_and_practice_images(tmp_path: Path, compress: bool) -> None:
    names = ["t1.bmp", "t2.bmp", "t3.bmp", "t4.bmp", "t5.bmp", "t6.bmp", "t7.bmp", "100.bmp", "101.bmp"]
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = names
    mos = np.array([[64.0, 25.3, 48.9, 35.9, 66.5, 54.6, 77.9, 32.56, 66.36]])
    (tmp_path / "Data").mkdir()
    scipy.io.savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cell}, do_compression=compress)
    scipy.io.savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos}, do_compression=compress)
    (tmp_path / "Images" / "trainingImages").mkdir(parents=True)
    (tmp_path / "Images" / "trainingImages" / "t1.bmp").write_bytes(b"")

    test = ds.read_dataset("live-itw", tmp_path)
    assert _names(test) == ["100.bmp", "101.bmp"] and [r.label for r in test.records] == [32.56, 66.36]
    everything = ds.read_dataset("livec", tmp_path, split="all")
    assert len(everything.records) == 9
    assert everything.records[0].path == tmp_path / "Images" / "trainingImages" / "t1.bmp"


def test_matfile_numeric_char_and_cell_values(tmp_path: Path) -> None:
    values = {"m": np.arange(6, dtype=np.int16).reshape(2, 3), "s": "hello", "x": np.array([[1.5, -2.0]])}
    scipy.io.savemat(tmp_path / "v.mat", values)
    got = load_mat(tmp_path / "v.mat")
    assert np.array_equal(got["m"], values["m"]) and got["s"] == "hello"
    assert np.array_equal(got["x"], values["x"])
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 7.3 MAT-file" + bytes(200))
    with pytest.raises(RedaesError, match=r"bad\.mat.*v7\.3"):
        load_mat(tmp_path / "bad.mat")


def test_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RedaesError, match="did you mean koniq10k"):
        ds.get_dataset("koniq10")
    with pytest.raises(RedaesError, match="looked for AVA.txt"):
        ds.read_dataset("ava", tmp_path, split="all")
    _write(tmp_path / "AVA.txt", "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(RedaesError, match="generic_test.jpgl.*--list"):
        ds.read_dataset("ava", tmp_path)
    with pytest.raises(RedaesError, match="no split 'val'"):
        ds.read_dataset("ava", tmp_path, split="val")
    with pytest.raises(ValueError, match="already registered"):
        ds.register_dataset(ds.get_dataset("ava"))


def test_read_labels_user_table_with_groups_and_lower_better(tmp_path: Path) -> None:
    labels = _write(tmp_path / "labels.csv", "file,dmos,scene\na.jpg,10,s1\nb.jpg,30,s1\n")
    recs = ds.read_labels(
        labels, root=tmp_path, image_col="file", label_col="dmos", group_col="scene", lower_better=True
    )
    assert [(r.path.name, r.label, r.group) for r in recs] == [("a.jpg", -10.0, "s1"), ("b.jpg", -30.0, "s1")]
    with pytest.raises(RedaesError, match=r"no column 'image' \(columns: file, dmos, scene\)"):
        ds.read_labels(labels, root=tmp_path)
    with pytest.raises(RedaesError, match="group column 'missing'"):
        ds.read_labels(labels, root=tmp_path, image_col="file", label_col="dmos", group_col="missing")


def test_every_registered_set_has_a_readable_spec() -> None:
    expected = {"ava", "koniq10k", "spaq", "tad66k", "para", "aadb", "flickr-aes", "biq2021", "livec"}
    assert expected <= set(ds.list_datasets())
    for name in ds.list_datasets():
        spec = ds.get_dataset(name)
        assert spec.mos_range[0] < spec.mos_range[1]


def test_entries_are_package_data_read_on_first_use() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "eval/datasets.json" in package_data["redaes_lite"]  # a pip install has them
    assert (root / "redaes_lite" / "eval" / "datasets.json").is_file()
