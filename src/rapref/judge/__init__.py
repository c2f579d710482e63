"""The judge stage: score generations with a registered scorer (reward models, checkers, LLM judges) and compare
policies pairwise."""
