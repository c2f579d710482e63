"""Progress (`rapref.progress`): in a log file whole lines without carriage returns, with the time left; nothing when
quiet; only rank 0 prints."""


def test_progress_in_a_log_file_quiet_and_rank_zero(monkeypatch, capsys):
    import time

    from rapref import progress

    monkeypatch.setenv("RAPREF_PROGRESS_SECONDS", "0.01")
    monkeypatch.delenv("RAPREF_QUIET", raising=False)
    monkeypatch.setattr(progress, "interactive", lambda: False)  # output goes to a file
    for _ in progress.track(range(3), "Judging", unit="batch"):
        time.sleep(0.02)
    err = capsys.readouterr().err
    assert "\r" not in err and "Judging: 1/3 batch" in err and "left" in err and "Judging: done, 3/3 batch" in err
    monkeypatch.setenv("RANK", "1")
    progress.say("result")
    list(progress.track(range(3), "Judging"))
    assert capsys.readouterr() == ("", "")  # only rank 0 prints
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("RAPREF_QUIET", "1")
    progress.say("result")
    list(progress.track(range(3), "Judging"))
    assert capsys.readouterr() == ("", "")
