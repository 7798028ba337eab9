"""Registry: decorator and function registration, lookup errors, parameters, entry-point discovery, frozen state."""
import textwrap

import pytest
import torch

import mvmr
from mvmr.registry import extractors


class _Const(mvmr.Provider):
    description = "test provider"

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.lin = torch.nn.Linear(3, dim)

    def output_dim(self, height, width):
        return self.dim

    def extract(self, images):
        return self.lin(images.mean((2, 3)))


@pytest.fixture
def cleanup():
    names = []
    yield names
    for n in names:
        extractors.unregister(n)


def test_decorator_and_function(cleanup):
    cleanup += ["t_dec", "t_fun"]

    @mvmr.register_extractor("t_dec")
    class Dec(_Const):
        pass

    mvmr.register_extractor("t_fun", _Const)
    assert {"t_dec", "t_fun"} <= set(mvmr.list_extractors())
    p = mvmr.create_extractor("t_fun", dim=5)
    assert p.name == "t_fun" and p.params == {"dim": 5}
    assert p(torch.rand(2, 3, 4, 4)).shape == (2, 5)


def test_providers_are_frozen(cleanup):
    cleanup.append("t_frozen")
    mvmr.register_extractor("t_frozen", _Const)
    p = mvmr.create_extractor("t_frozen")
    assert not any(t.requires_grad for t in p.parameters())
    p.train()
    assert not p.training
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert not p(x).requires_grad


def test_duplicate_names_both_registrations(cleanup):
    cleanup.append("t_dup")
    mvmr.register_extractor("t_dup", _Const)

    class Other(_Const):
        pass

    with pytest.raises(mvmr.MVMRError, match=r"registered twice.*_Const.*Other"):
        mvmr.register_extractor("t_dup", Other)


def test_unknown_name_lists_names_and_closest():
    with pytest.raises(mvmr.MVMRError, match=r"unknown extractor 'hgo'; did you mean 'hog'\?.*lsd.*pixels"):
        mvmr.create_extractor("hgo")


def test_bad_parameter_names_provider_and_parameter():
    with pytest.raises(mvmr.MVMRError, match=r"extractor 'lsd' has no parameter 'sise' \(did you mean 'size'\?\)"):
        mvmr.create_extractor("lsd", sise=3)


def test_family_names_take_a_spec(cleanup):
    cleanup.append("t_fam")

    def family(spec: str, dim: int = 2):
        return _Const(dim=int(spec))

    mvmr.register_extractor("t_fam", family, family=True)
    assert mvmr.create_extractor("t_fam:7")(torch.rand(1, 3, 2, 2)).shape == (1, 7)
    with pytest.raises(mvmr.MVMRError, match="needs a spec"):
        mvmr.create_extractor("t_fam")


def test_entry_point_discovery(tmp_path, monkeypatch):
    """A tiny installed package (dist-info + module) is found through the mvmr.extractors group."""
    (tmp_path / "tinyplug.py").write_text(textwrap.dedent("""
        import torch, mvmr

        class Mean(mvmr.Provider):
            description = "per-channel mean"
            def output_dim(self, h, w):
                return 3
            def extract(self, images):
                return images.mean((2, 3))

        @mvmr.register_extractor("tiny_registered")
        class Registered(Mean):
            pass
    """))
    info = tmp_path / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mvmr.extractors]\ntiny_mean = tinyplug:Mean\ntiny_registered = tinyplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    extractors.refresh()
    try:
        assert {"tiny_mean", "tiny_registered"} <= set(mvmr.list_extractors())
        x = torch.rand(2, 3, 5, 5)
        assert torch.allclose(mvmr.create_extractor("tiny_mean")(x), x.mean((2, 3)))
        assert mvmr.create_extractor("tiny_registered")(x).shape == (2, 3)
    finally:
        for n in ("tiny_mean", "tiny_registered"):
            extractors.unregister(n)
        monkeypatch.undo()
        extractors.refresh()


def test_builtins_use_the_public_api():
    """The core never names the built-in packages; they arrive through entry points."""
    import pathlib

    core = pathlib.Path(mvmr.__file__).parent
    for path in core.rglob("*.py"):
        text = path.read_text()
        assert "mvmr_extractors" not in text and "mvmr_teachers" not in text, path
