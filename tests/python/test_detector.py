"""zerodet.Detector: detections from Python equal `zerodet detect` on the shared images."""

import json
import pathlib
import shutil
import subprocess

import numpy
import pytest

import zerodet
from conftest import BINARY, SHARED

MODEL = SHARED / "models" / "yolov8n.onnx"
IMAGES = sorted((SHARED / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def detector():
    return zerodet.Detector(MODEL, threads=2)


@pytest.fixture(scope="module")
def cli_detections():
    """`zerodet detect` over the shared images: file name -> detections."""
    out = subprocess.run([str(BINARY), "detect", "--model", str(MODEL), "--threads", "2",
                          *map(str, IMAGES)], check=True, capture_output=True, text=True).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {pathlib.Path(line["image"]).name: line["detections"] for line in lines}


def test_detections_equal_zerodet_detect_for_paths_bytes_and_arrays(detector, cli_detections):
    cv2 = pytest.importorskip("cv2")
    assert len(cli_detections) == len(IMAGES) >= 9
    assert sum(1 for d in cli_detections.values() if d) >= 8  # all but scream.jpg
    for path in IMAGES:
        expected = cli_detections[path.name]
        assert detector.detect(str(path)) == expected
        assert detector.detect(path) == expected  # os.PathLike
        assert detector.detect(path.read_bytes()) == expected
        bgr = cv2.imread(str(path))  # OpenCV's decode is pixel-identical to zerodet's
        assert detector.detect(bgr, pixel_format="bgr") == expected
        assert detector.detect(numpy.ascontiguousarray(bgr[:, :, ::-1])) == expected


def test_detection_shape(detector):
    detections = detector.detect(SHARED / "images" / "dog.jpg")
    assert [d["class"] for d in detections[:2]] == ["dog", "bicycle"]
    for d in detections:
        assert list(d) == ["class_id", "class", "score", "box"]
        assert isinstance(d["class_id"], int) and isinstance(d["score"], float)
        assert len(d["box"]) == 4 and d["box"][0] < d["box"][2] and d["box"][1] < d["box"][3]
    assert detector.info["input_size"] == (640, 640) and detector.class_names[16] == "dog"


def test_preloaded_sample_runs_in_place_with_the_files_results(detector, coco_store):
    ds = zerodet.Dataset(coco_store.socket, "val")
    for index in (0, 1, 2):
        sample = ds.sample(index)
        assert detector.detect(sample) == detector.detect(sample.path)
    with pytest.raises(ValueError, match="letterbox"):
        detector.detect(zerodet.Dataset(coco_store.socket, "val-rgb").sample(0))


def test_a_repository_model_detects_as_the_file(detector, tmp_path):
    version = tmp_path / "repo" / "yolov8n" / "1"
    version.mkdir(parents=True)
    shutil.copyfile(MODEL, version / "model.onnx")
    from_repo = zerodet.Detector("yolov8n:1", repo=tmp_path / "repo")
    image = SHARED / "images" / "bus.jpg"
    assert from_repo.detect(image) == detector.detect(image)
    with pytest.raises(KeyError):
        zerodet.Detector("absent", repo=tmp_path / "repo")
    with pytest.raises(ValueError):
        zerodet.Detector("yolov8n", repo=tmp_path / "repo", threads=1)


def test_thresholds(tmp_path):
    strict = zerodet.Detector(MODEL, conf=0.6, max_det=1, threads=2)
    detections = strict.detect(SHARED / "images" / "dog.jpg")
    assert len(detections) == 1 and detections[0]["score"] >= 0.6


def test_detector_errors(detector, tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        zerodet.Detector(tmp_path / "missing.onnx")
    assert isinstance(error.value, zerodet.FileNotFoundError_)
    with pytest.raises(NotImplementedError) as error:
        zerodet.Detector(MODEL, provider="tensorrt")
    assert isinstance(error.value, zerodet.UnimplementedError)
    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"not an onnx file")
    with pytest.raises(zerodet.CorruptDataError):
        zerodet.Detector(not_a_model)
    with pytest.raises(FileNotFoundError):
        detector.detect(tmp_path / "missing.jpg")
    with pytest.raises(zerodet.InvalidArgumentError):
        detector.detect(tmp_path)  # a directory
    with pytest.raises(OSError) as error:
        detector.detect("/proc/self/mem")  # reading it fails with EIO
    assert isinstance(error.value, zerodet.IoError)
    with pytest.raises(zerodet.CorruptDataError):
        detector.detect(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(ValueError):
        detector.detect(numpy.zeros((64, 64, 3), numpy.float32))
    with pytest.raises(ValueError):
        detector.detect(numpy.zeros((64, 192, 3), numpy.uint8)[:, ::3])
    with pytest.raises(ValueError):
        detector.detect(numpy.zeros((64, 64, 3), numpy.uint8), pixel_format="yuv")
    with pytest.raises(TypeError):
        detector.detect(12)
    with pytest.raises(ValueError):
        zerodet.Detector(MODEL, conf=2)
