"""The ``splink`` matcher: Fellegi-Sunter record linkage with Splink on DuckDB.

Each declared column is compared at levels (exact, then similarity thresholds, then
anything else); a pair's match probability combines the levels' m probabilities (how
often true matches agree at that level) and u probabilities (how often random pairs
do). u is estimated by random sampling of record pairs; m is fixed at the defaults
below unless ``training: em``, which re-estimates it by expectation maximisation on
each blocking rule's pairs: EM needs enough duplicates to converge, so on small or
clean data the fixed m is the stable choice.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from conn.errors import ConfigError
from conn.profiles.matching import PAIRS, Matcher

#: Comparison kinds an entry of ``options.comparisons`` may name.
KINDS = ("jaro_winkler", "levenshtein", "exact", "email")
#: m probabilities per kind, for its levels after the null level: exact, the similarity
#: levels, else. True matches mostly agree exactly or nearly (typos).
M_FIXED = {
    "jaro_winkler": [0.70, 0.18, 0.07, 0.05],
    "levenshtein": [0.70, 0.18, 0.07, 0.05],
    "exact": [0.85, 0.15],
    "email": [0.75, 0.08, 0.08, 0.05, 0.04],
}


class SplinkMatcher(Matcher):
    """Fuzzy matching of names, addresses and e-mails with Splink (duplicates within
    the profile set's records)."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "comparisons": {
                "type": "object",
                "description": "column -> how it is compared (default jaro_winkler).",
                "additionalProperties": {"enum": list(KINDS)},
            },
            "training": {"enum": ["fixed", "em"],
                         "description": "fixed: u sampled, m fixed (default); em: m by "
                                        "expectation maximisation on each blocking rule."},
            "prior": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                      "description": "Probability that two random records match "
                                     "(default: 1 / the number of records)."},
            "max_pairs": {"type": "number", "minimum": 1,
                          "description": "Record pairs sampled to estimate u (default 1e6)."},
            "seed": {"type": "integer", "description": "Sampling seed (default 1)."},
        },
    }

    def pairs(self, records: pa.Table) -> pa.Table:
        """Every blocked pair with its Splink match probability."""
        if records.num_rows < 2:
            return PAIRS.empty_table()
        import splink.comparison_library as cl
        from splink import DuckDBAPI, Linker, SettingsCreator, block_on

        opts = self.spec.options
        kinds = opts.get("comparisons") or {}
        training = opts.get("training", "fixed")
        comparisons: list[Any] = []
        for col in self.spec.columns:
            kind = kinds.get(col, "jaro_winkler")
            comp = {"jaro_winkler": lambda c: cl.JaroWinklerAtThresholds(c, [0.92, 0.8]),
                    "levenshtein": lambda c: cl.LevenshteinAtThresholds(c, [1, 2]),
                    "exact": cl.ExactMatch,
                    "email": cl.EmailComparison}[kind](col)
            if training == "fixed":
                comp.configure(m_probabilities=M_FIXED[kind])
            comparisons.append(comp)
        rules: list[Any] = [block_on(*rule) for rule in self.spec.blocking]
        settings = SettingsCreator(
            link_type="dedupe_only", unique_id_column_name="rkey",
            comparisons=comparisons, blocking_rules_to_generate_predictions=rules,
            probability_two_random_records_match=float(
                opts.get("prior", 1 / records.num_rows)),
            retain_matching_columns=False)
        # Splink logs progress and advice (sample sizes, parameters left at their
        # defaults) for notebooks; a build reports its own figures.
        logging.getLogger("splink").setLevel(logging.ERROR)
        db = DuckDBAPI()
        linker = Linker(db.register(records), settings, log_level=None)
        linker.training.estimate_u_using_random_sampling(
            max_pairs=float(opts.get("max_pairs", 1e6)), seed=int(opts.get("seed", 1)))
        if training == "em":
            if not rules:
                raise ConfigError("training 'em' needs blocking rules (EM runs on each "
                                  "rule's pairs)", path="options.training")
            for rule in rules:
                linker.training.estimate_parameters_using_expectation_maximisation(rule)
        out = linker.inference.predict().as_pyarrow_table()
        return pa.table({
            "record_a": pc.cast(out.column("rkey_l"), pa.uint64()),
            "record_b": pc.cast(out.column("rkey_r"), pa.uint64()),
            "score": pc.cast(out.column("match_probability"), pa.float64()),
        }, schema=PAIRS)
