"""Test-time adaptation: methods that adapt a source-trained model on the unlabelled test
stream itself, online (each batch predicted before it is adapted on), one family per
module: normalisation statistics, entropy minimisation, teachers, output-only."""
