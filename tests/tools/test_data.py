"""kdutils.tools.data (``make data``) and every part's data finding on a fresh machine: the
development sample folder hidden (``KD_NO_SHARED=1``), an empty data root, and the fetchers
pointed at generated archives served from 127.0.0.1."""
import pytest

from kdutils.core import datasets as DS
from kdutils.core.profiles import resolve
from kdutils.tools import data as T
from tests import fake_mirror as FM


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return FM.make_mirror(tmp_path_factory.mktemp("mirror"), scale="tiny")


@pytest.fixture
def fresh_machine(mirror, tmp_path, monkeypatch):
    """(data root, request log): shared data hidden, KD_DATA_ROOT empty, the mirror served."""
    handler = type("Handler", (FM.MirrorHandler,), dict(log=[], dropped=set()))
    server, url = FM.start_server(mirror, handler=handler)
    monkeypatch.setenv("KD_NO_SHARED", "1")
    monkeypatch.setenv("KD_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv(DS.MIRROR_ENV, url)
    yield tmp_path / "data", handler.log
    server.shutdown()


def test_needed_lists_each_data_set_once():
    assert T.needed("quick") == ["cifar100", "cifar10", "faces-orl", "food-quick"]
    assert T.needed("full", [4]) == ["cifar10", "faces"]
    assert T.needed("smoke") == []
    with pytest.raises(ValueError, match="unknown part"):
        T.needed("quick", [6])


def test_every_quick_part_finds_or_fetches_its_data(fresh_machine):
    """Each part's own data-finding code, in notebook order, on an empty data root."""
    from kdutils.parts import part1, part3, part4, part5

    root, log = fresh_machine
    setup = resolve("quick", settings={"quick": dict(part3.SETTINGS["quick"])})
    assert setup.data_root == root
    tr, te = part1.cifar_sets("cifar100", setup, 2, 1)  # parts 1 and 2
    assert (len(tr), len(te), tr.num_classes) == (200, 100, 100)
    tr3, te3 = part3.cifar10_sets(setup)  # part 3 (and part 4's old task)
    assert (len(tr3), len(te3)) == (60, 30)
    faces = part4.load_faces(root / "faces-orl", n_train=8, n_test=2)  # the notebook's quick face folder
    assert len(faces.subjects) == 40 and len(faces.train) == 320
    food = part5.food_root(setup)
    assert food == root / "food-pizza-steak-sushi"
    assert part5.load_food_splits(food, 32).num_classes == 3
    fetched = {p for p, _ in log if not p.endswith("checksums.json")}
    assert fetched == {"/cifar-100-python.tar.gz", "/cifar-10-python.tar.gz", "/olivettifaces.mat",
                       "/pizza_steak_sushi_20_percent.zip"}
    assert all(r["present"] is not None for r in DS.plan(T.needed("quick"), root))


def test_fetch_prints_the_total_first_then_fetches_and_then_has_nothing_to_do(fresh_machine, capsys):
    root, log = fresh_machine
    assert T.main(["fetch", "--profile", "quick", "--part", "4"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"Data for the quick profile under {root}: about ")
    assert out.index("to download") < out.index("downloading")
    assert (root / "faces-orl" / "s1").is_dir() and (root / "cifar-10-batches-py").is_dir()
    n = len(log)
    assert T.main(["fetch", "--profile", "quick", "--part", "4"]) == 0
    assert "0.0 MB to download (0 of 2 data sets)" in capsys.readouterr().out and len(log) == n


def test_offline_fetch_lists_what_is_missing_and_how_to_get_it(fresh_machine, monkeypatch, capsys):
    monkeypatch.setenv(DS.MIRROR_ENV, "http://127.0.0.1:9")
    assert T.main(["fetch", "--profile", "full", "--part", "5"]) == 1
    err = capsys.readouterr().err
    assert "food-11" in err and "gdown" in err and "dropbox" in err.lower()
    assert T.main(["plan", "--profile", "full"]) == 1  # plan fetches nothing and reports the gap
    assert "MISSING" in capsys.readouterr().out


def test_smoke_needs_nothing(capsys):
    assert T.main(["fetch", "--profile", "smoke"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
