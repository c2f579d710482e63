"""Sampling in process (`rapref.inference.sampler`) keeps its side effects inside its own work: torch's thread count is
given back."""

import torch


def test_sampling_in_process_gives_the_thread_count_back(trained_dir):
    from rapref.inference.sampler import SamplingConfig
    from rapref.inference.sampler import sample_batches

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        texts = sample_batches(str(trained_dir), [[1, 2, 3]], SamplingConfig(max_new_tokens=2), workers=2,
                               threads=1)  # two workers asked, one batch left: sampled here, single-threaded
        assert len(texts) == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
