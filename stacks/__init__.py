"""CDK stacks (deployment boundaries) and the constructs they compose."""
