"""Training tool chain of redaes-lite: edits, teachers, pair data, student, losses and trainer.

Imports ``redaes_lite`` (its preprocessing and pair format); ``redaes_lite`` never imports this package.
"""
