"""After training: generate on a goal, judge the samples, diagnose what the method claims, export for benchmarks."""
