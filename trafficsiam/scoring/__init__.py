"""Score: assign new records to the known clusters and find new error types.

    batch.py        a loaded model turning one batch of records into the ts_* columns
    tally.py        counts that add up across batches, files and workers
    passes.py       the two passes over one input, shared by every engine:
                    pass 1 assess -> new types (cluster the unexplained) -> pass 2 add ts_*
    local.py        the local engine: files streamed in this process, spooled between passes
    dask_engine.py  the Dask engine: the same passes as two map_partitions
    frame.py        a DataFrame in memory (`Model.score`)
    plan.py, tables.py, run.py
                    the run: outputs planned, an engine run, summary and tables, the state

Dependencies point down this list; `run.score` is the entry point (`api.score`).
"""

from trafficsiam.scoring.batch import Scoring
from trafficsiam.scoring.frame import score_frame
from trafficsiam.scoring.run import ScoreResult, score

__all__ = ["ScoreResult", "Scoring", "score", "score_frame"]
