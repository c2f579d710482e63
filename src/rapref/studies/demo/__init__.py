"""The main job: a controlled reproduction of the paper's claims in a synthetic world with a known true reward."""
