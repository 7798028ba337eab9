"""The step-time split: nested sections count exclusive of their children, per step, and a run reports it."""
import itertools

import torch

import mvmr.profile as profile


def test_sections_are_exclusive_of_the_sections_inside(monkeypatch):
    clock = itertools.count()  # every reading of the clock advances it by one second
    monkeypatch.setattr(profile.time, "perf_counter", lambda: float(next(clock)))
    p = profile.StepProfile(torch.device("cpu"))
    for _ in range(2):
        with p.section("data", host=True):       # 0 -> 1
            pass
        with p.section("student"):               # 2 -> 7, minus providers (3 -> 4) and objective (5 -> 6)
            with p.section("providers"):
                pass
            with p.section("objective"):
                pass
        p.step_done()
        p.flush()
    assert p.summary() == {"data": 1e3, "student": 3e3, "providers": 1e3, "objective": 1e3}
    assert p.line().startswith("step time, mean of 2 steps: data 1000.0 ms (17%), student 3000.0 ms (50%)")


def test_flush_waits_for_the_step_to_end():
    p = profile.StepProfile(torch.device("cpu"))
    with p.section("student"):
        p.flush()  # inside a step: nothing is read yet
        assert p.seconds == {}
    p.flush()
    assert set(p.seconds) == {"student"}


def test_no_profile_outside_a_run():
    assert profile.current is None
    with profile.section("student"):
        pass
