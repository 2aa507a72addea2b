"""Serves the retrieval example's SavedModel with TensorFlow alone: a few users' top movies.

Imports TensorFlow and nothing of tf_freqsgd, TFRA or TFRS, as a TF Serving host would, calls the
``serving_default`` signature and prints each user's recommendations with their titles (from
``assets.extra/movies.tsv``, which the retrieval example writes beside the model).

  .venv/bin/python examples/serve_demo.py --export_dir=build/demo/retrieval/1 --users=1,2,3
"""

import csv
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("export_dir", None, "The SavedModel written by movielens_retrieval.py --export_dir.",
                    required=True)
flags.DEFINE_list("users", ["1", "2", "3"], "Raw user ids of the dataset (MovieLens' own) to recommend for.")
FLAGS = flags.FLAGS

FOREIGN_MODULES = ("tf_freqsgd", "tensorflow_recommenders_addons", "tensorflow_recommenders", "tf_keras")


def read_titles(export_dir):
    path = os.path.join(export_dir, "assets.extra", "movies.tsv")
    if not os.path.exists(path):
        return {}
    with open(path, newline="", encoding="utf-8") as file:
        rows = csv.reader(file, delimiter="\t")
        next(rows)
        return {int(movie_id): title for movie_id, title in rows}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        users = [int(user) for user in FLAGS.users]
    except ValueError:
        raise app.UsageError(f"--users must be integers; got {','.join(FLAGS.users)}.") from None
    serve = tf.saved_model.load(FLAGS.export_dir).signatures["serving_default"]
    answer = serve(user_id=tf.constant(users, tf.int64))
    titles = read_titles(FLAGS.export_dir)
    loaded = [name for name in FOREIGN_MODULES if name in sys.modules]
    print(f"Loaded {FLAGS.export_dir} with TensorFlow {tf.__version__} alone "
          f"(imported of {', '.join(FOREIGN_MODULES)}: {', '.join(loaded) or 'none'}).")
    for user, movie_ids, scores, cold_start in zip(users, answer["movie_ids"].numpy(), answer["scores"].numpy(),
                                                   answer["cold_start"].numpy()):
        # A user the model does not know gets the most-trained movies, scored by their counts.
        print(f"\nUser {user}" + (" (unknown: cold start, the most-trained movies):" if cold_start else ":"))
        for rank, (movie_id, score) in enumerate(zip(movie_ids, scores), 1):
            title = titles.get(int(movie_id), f"movie {movie_id}")
            print(f"  {rank:2d}. {title}  (movie {movie_id}, score {score:.3f})")


if __name__ == "__main__":
    app.run(main)
