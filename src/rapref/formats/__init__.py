"""The files one stage hands to another, each read and written by exactly one module here: dataset folders,
prompt files, generations files."""
