"""Progress on stderr: nothing for short work, then lines with the time left, at most one
every LINE_EVERY_S; nothing at all when off."""
from __future__ import annotations

import pytest
from helpers import ROOT

from vaecli import clock, progress


@pytest.fixture
def fake_time(monkeypatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(clock, "clock", lambda: now[0])
    return now


def test_counted_work_shows_lines_with_the_time_left_once_it_lasts(fake_time, capsys):
    with progress.reporting("lines"), progress.Task("K=5000 on the test split", 10_000, " images") as task:
        for t, done in [(1.0, 1000), (3.0, 2000), (5.0, 3000), (14.0, 5000)]:
            fake_time[0] = t
            task.update(done)
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "K=5000 on the test split: 2,000/10,000 images, 3.0s so far, about 12.0s left",  # 3 s for 2/10
        "K=5000 on the test split: 5,000/10,000 images, 14.0s so far, about 14.0s left",
        "K=5000 on the test split: done in 14.0s",
    ]


def test_short_work_and_work_nobody_asked_to_report_show_nothing(fake_time, capsys):
    with progress.reporting("lines"), progress.Task("quick", 10) as task:
        fake_time[0] = 1.0
        task.update(10)
    with progress.Task("unasked", 10) as task:  # the ambient mode outside a command is "none"
        fake_time[0] = 100.0
        task.update(5)
        progress.say("a note")
    with progress.reporting(False):
        progress.say("a silenced note")
    assert capsys.readouterr().err == ""
    with pytest.raises(Exception, match="progress='loud'"):
        progress.resolve("loud")


def test_dataset_preparation_in_training_follows_log_progress(tmp_path, capsys):
    """`vae train` says on stderr that it prepares a dataset unless log.progress is none."""
    from vaecli import config
    from vaecli.training import start

    for mode, heard in (("none", False), ("lines", True)):
        cfg = config.load(ROOT / "configs" / "disentanglement" / "betavae_toy_sprites.yaml",
                          [f"data.cache_dir={tmp_path / mode}", f"log.progress={mode}"])
        train, _ = start.load_data(cfg)
        assert len(train) > 0
        err = capsys.readouterr().err
        assert ("drawing 'toy_sprites'" in err) == heard, (mode, err)
