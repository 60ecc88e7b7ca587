"""Evaluation: IR metrics through ir-measures (pytrec_eval), runs, reports."""
