"""MovieLens ratings as NumPy arrays: the synthetic default, the raw release files, the TFDS cache.

``load_movielens`` returns a `MovieLens` record whatever the source:

* ``ratings``, one entry per rating: ``user_id``, ``item_id`` (int64, contiguous indices),
  ``rating`` (float32), ``timestamp`` (int64, seconds), ``label`` (float32, 1 when rating > 3);
* ``items``, indexed by ``item_id``: ``movie_id`` (int64, the raw id), ``title``, ``genres``
  (object arrays of str, genres "|"-joined);
* ``users``, indexed by ``user_id``: ``user_id`` (int64, the raw id: what a served model is asked
  for). The synthetic datasets define raw ids as ``index + 1``, as their ``movie_id`` is
  ``item_id + 1`` (MovieLens numbers both from 1).

Indices: ``user_id`` ranks the raw user ids that have ratings, in increasing order. ``item_id`` is
the movie's line in the movies file (u.item, movies.dat, movies.csv), in file order, so a movie
nobody rated keeps its row (ML-1M: 3883 items, 3706 of them rated). TFDS has no movies table in
its ratings configs: there the items are the rated movies in increasing raw id.

Raw formats, read from ``data_dir`` (or ``data_dir/<release>``):

* ``ml-100k``: ``u.data``, tab-separated ``user movie rating timestamp`` (integers, ratings 1..5);
  ``u.item``, latin-1, ``id|title|release date|video release date|IMDb URL|`` and 19 genre flags.
* ``ml-1m``: ``ratings.dat``, ``user::movie::rating::timestamp``; ``movies.dat``, latin-1,
  ``id::title::genres``.
* ``ml-latest-small``, ``ml-latest``, ``ml-20m``, ``ml-25m``: ``ratings.csv`` with header
  ``userId,movieId,rating,timestamp`` (half stars 0.5..5); ``movies.csv``, UTF-8, header
  ``movieId,title,genres``, titles with commas quoted.

A malformed line raises `MovieLensFormatError` naming the file, the line number and what was
expected; a missing file raises ``FileNotFoundError`` naming it. User and movie ids must be
integers in ``[0, 2**53)`` and timestamps integers of magnitude below ``2**53`` (``1.9`` as a user
id is refused, not truncated; a timestamp too large is refused, not wrapped). Ratings files are
parsed by ``np.loadtxt`` (C code); only when that or a value check fails is the file re-read line
by line to find the first bad line.

Duplicates: when a user rated a movie more than once, the rating with the latest timestamp is kept
(the later line on a tie), the others dropped; ``MovieLens.duplicate_ratings`` counts the dropped.
"""

import csv
import dataclasses
import io
import os
import re
import warnings

import numpy as np
import tensorflow as tf

from tf_freqsgd.choices import DATASETS
from tf_freqsgd.data.ids import distinct_and_index, rows_of
from tf_freqsgd.data.synthetic import MOVIELENS_GENRES, make_interactions, make_items

# Name, users, items and ratings of the synthetic datasets: the sizes of MovieLens 100K and 1M
# (1M's items counted as its rated movies).
_SYNTHETIC_SIZES = {"synthetic": ("synthetic-100k", 943, 1682, 100_000),
                    "synthetic-1m": ("synthetic-1m", 6040, 3706, 1_000_209)}
_CSV_RELEASES = ("ml-latest-small", "ml-latest", "ml-20m", "ml-25m")
_RELEASE_FORMAT = {"ml-100k": "100k", "ml-1m": "1m", **{release: "csv" for release in _CSV_RELEASES}}
_FORMAT_FILES = {"100k": ("u.data", "u.item"), "1m": ("ratings.dat", "movies.dat"),
                 "csv": ("ratings.csv", "movies.csv")}
_TFDS_CONFIGS = {"ml-100k": "100k-ratings", "ml-1m": "1m-ratings", "ml-latest-small": "latest-small-ratings",
                 "ml-20m": "20m-ratings", "ml-25m": "25m-ratings"}
_RATINGS_HEADER = "userId,movieId,rating,timestamp"
_MOVIES_HEADER = ["movieId", "title", "genres"]
# Read as float64 so that a non-integer or out-of-range value is seen, not truncated or wrapped.
_RATING_COLUMNS = np.dtype([("user", np.float64), ("movie", np.float64), ("rating", np.float32),
                            ("timestamp", np.float64)])
# Ids and timestamps must be integers float64 holds exactly.
_EXACT_INTEGERS = 2**53


class MovieLensFormatError(ValueError):
    """A line of a MovieLens file that does not have the release's format."""

    def __init__(self, path, line_number, expected, line):
        shown = line if len(line) <= 200 else line[:200] + "..."
        super().__init__(f"{path}, line {line_number}: expected {expected}; got {shown!r}.")
        self.path = path
        self.line_number = line_number


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class MovieLens:
    """Ratings and item metadata of one MovieLens-shaped dataset (fields: see the module docstring)."""

    ratings: dict
    items: dict
    users: dict
    num_users: int
    num_items: int
    name: str
    source: str
    duplicate_ratings: int = 0

    def __repr__(self):
        return (f"MovieLens(name={self.name!r}, ratings={len(self.ratings['rating'])}, num_users={self.num_users}, "
                f"num_items={self.num_items}, duplicate_ratings={self.duplicate_ratings}, source={self.source!r})")


def load_movielens(dataset="synthetic", data_dir=None, *, num_ratings=None, seed=0):
    """A `MovieLens` record of ``dataset``.

    Args:
      dataset: "synthetic" (MovieLens 100K's 943 users, 1682 items, 100,000 ratings),
        "synthetic-1m" (1M's 6040 users, 3706 items, 1,000,209 ratings), a release ("ml-100k",
        "ml-1m", "ml-latest-small", "ml-latest", "ml-20m", "ml-25m"), or "auto": the release whose
        ratings file is in ``data_dir`` (u.data, ratings.dat or ratings.csv).
      data_dir: for a release, the directory of its files, or a directory holding it as
        ``<release>/`` (e.g. ``../shared/data`` for ``../shared/data/ml-100k``). Without the files,
        the release is read from the TFDS cache (``data_dir`` then being the TFDS data directory)
        when ``tensorflow_datasets`` is installed and has ``movielens/<config>`` prepared; nothing is
        downloaded. Unused by the synthetic datasets.
      num_ratings: synthetic: the number of ratings drawn (users and items keep the sizes above);
        a release: a seeded random sample of this many ratings, in file order, users re-indexed.
      seed: the synthetic generator's seed (`make_interactions`, `make_items`), or the sample's.
    """
    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}; got {dataset!r}.")
    if num_ratings is not None and not (isinstance(num_ratings, (int, np.integer)) and num_ratings > 0):
        raise ValueError(f"`num_ratings` must be a positive integer or None; got {num_ratings!r}.")
    if dataset in _SYNTHETIC_SIZES:
        return _synthetic(dataset, num_ratings, seed)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise FileNotFoundError(f"`data_dir` {data_dir!r} is not a directory.")
    if dataset == "auto":
        dataset, directory = _detect_release(data_dir)
    else:
        directory = _release_directory(dataset, data_dir)
    record = _read_release(dataset, directory) if directory is not None else _read_tfds(dataset, data_dir)
    return record if num_ratings is None else _sample(record, num_ratings, seed)


def _synthetic(dataset, num_ratings, seed):
    name, num_users, num_items, default_num_ratings = _SYNTHETIC_SIZES[dataset]
    ratings = make_interactions(num_users=num_users, num_items=num_items,
                                num_ratings=num_ratings or default_num_ratings, seed=seed)
    name = name if num_ratings is None else f"{name}-n{num_ratings}"
    users = {"user_id": np.arange(1, num_users + 1, dtype=np.int64)}
    return MovieLens(ratings, make_items(num_items, seed), users, num_users, num_items, name, "synthetic")


def _sample(record, num_ratings, seed):
    size = len(record.ratings["rating"])
    if num_ratings > size:
        raise ValueError(f"`num_ratings` ({num_ratings}) exceeds the {size} ratings of {record.name}.")
    keep = np.sort(np.random.default_rng(seed).choice(size, num_ratings, replace=False))
    ratings = {key: value[keep] for key, value in record.ratings.items()}
    users, ratings["user_id"] = distinct_and_index(ratings["user_id"])
    return dataclasses.replace(record, ratings=ratings, users={"user_id": record.users["user_id"][users]},
                               num_users=len(users), name=f"{record.name}-n{num_ratings}")


def _release_directory(release, data_dir):
    """The directory holding ``release``'s two files, None when neither place has either file."""
    if data_dir is None:
        return None
    names = _FORMAT_FILES[_RELEASE_FORMAT[release]]
    for directory in (data_dir, os.path.join(data_dir, release)):
        present = [os.path.exists(os.path.join(directory, name)) for name in names]
        if all(present):
            return directory
        if any(present):
            missing = os.path.join(directory, names[present.index(False)])
            raise FileNotFoundError(f"{missing}: not found; {release} needs {names[0]} and {names[1]} in {directory}.")
    return None


def _detect_release(data_dir):
    if data_dir is None:
        raise ValueError("dataset='auto' needs `data_dir`, the directory of a MovieLens release's files.")
    found = [fmt for fmt, (ratings_file, _) in _FORMAT_FILES.items()
             if os.path.exists(os.path.join(data_dir, ratings_file))]
    if not found:
        raise FileNotFoundError(f"{data_dir} holds no MovieLens ratings file (u.data, ratings.dat or ratings.csv).")
    if len(found) > 1:
        files = [_FORMAT_FILES[fmt][0] for fmt in found]
        raise ValueError(f"{data_dir} holds the ratings files of several releases ({files}); name one as `dataset`.")
    release = {"100k": "ml-100k", "1m": "ml-1m"}.get(found[0])
    if release is None:  # the CSV releases share one format: the directory's name tells them apart
        base = os.path.basename(os.path.normpath(data_dir))
        release = base if base in _CSV_RELEASES else "ml-latest"
    return release, _release_directory(release, data_dir)


def _read_release(release, directory):
    ratings_file, movies_file = (os.path.join(directory, name) for name in _FORMAT_FILES[_RELEASE_FORMAT[release]])
    fmt = _RELEASE_FORMAT[release]
    items = {"100k": _read_u_item, "1m": _read_movies_dat, "csv": _read_movies_csv}[fmt](movies_file)
    users, item_index, ratings, timestamps = _read_ratings(ratings_file, fmt, items["movie_id"])
    return _assemble(release, directory, users, item_index, ratings, timestamps, items)


def _assemble(name, source, users, item_index, ratings, timestamps, items):
    """The record of raw user ids and item indices, users turned into contiguous indices, one
    rating per (user, movie)."""
    user_ids, user_index = distinct_and_index(users)
    ratings = np.asarray(ratings, dtype=np.float32)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    keep = _latest_per_pair(user_index * len(items["movie_id"]) + item_index, timestamps)
    dropped = len(ratings) - len(keep)
    if dropped:
        # Every pair keeps a rating, so every user stays.
        user_index, item_index, ratings, timestamps = (a[keep] for a in (user_index, item_index, ratings, timestamps))
    return MovieLens(
        ratings={"user_id": user_index.astype(np.int64), "item_id": item_index.astype(np.int64), "rating": ratings,
                 "timestamp": timestamps, "label": (ratings > 3).astype(np.float32)},
        items=items, users={"user_id": user_ids.astype(np.int64)}, num_users=len(user_ids),
        num_items=len(items["movie_id"]), name=name, source=source, duplicate_ratings=dropped)


def _latest_per_pair(pairs, timestamps):
    """Positions of the rating kept for each distinct pair: the latest timestamp, then the later
    line; in file order."""
    order = np.lexsort((np.arange(len(pairs)), timestamps, pairs))
    last_of_pair = np.r_[pairs[order][1:] != pairs[order][:-1], True]
    return np.sort(order[last_of_pair])


# ---------------------------------------------------------------------------------------------
# Ratings files


_NUMBER = re.compile(r"[ ]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[ ]*")


def _is_integer(text, low=0, high=_EXACT_INTEGERS):
    """Whether ``text`` is a number np.loadtxt reads (Python's float() also takes "1_000") whose
    value is an integer in ``[low, high)``."""
    if _NUMBER.fullmatch(text) is None:
        return False
    value = float(text)
    return value.is_integer() and low <= value < high


def _is_timestamp(text):
    return _is_integer(text, 1 - _EXACT_INTEGERS)


def _is_star_rating(text):
    return text.strip() in ("1", "2", "3", "4", "5")


def _is_half_star_rating(text):
    if re.fullmatch(r"[ ]*[0-9]*\.?[0-9]*[ ]*", text) is None or not any(c.isdigit() for c in text):
        return False
    twice = 2 * float(text)
    return twice.is_integer() and 1 <= twice <= 10


def _read_ratings(path, fmt, known_movies):
    """(users, item rows, ratings, timestamps) of a ratings file whose movies are all in ``known_movies``."""
    movies_file = _FORMAT_FILES[fmt][1]
    if fmt == "csv":
        delimiter, header_lines, encoding, is_rating = ",", 1, "utf-8", _is_half_star_rating
        expected = (f"userId,movieId,rating,timestamp: integers (ids in [0, 2^53)), a rating that is a multiple "
                    f"of 0.5 in 0.5..5, a movieId listed in {movies_file}")
    else:
        delimiter, header_lines, encoding, is_rating = ("\t" if fmt == "100k" else "::"), 0, "latin-1", _is_star_rating
        shown = "<tab>" if fmt == "100k" else "::"
        expected = (f"user{shown}movie{shown}rating{shown}timestamp: integers (ids in [0, 2^53)), a rating in "
                    f"1..5, a movie id listed in {movies_file}")
    if header_lines:
        with open(path, encoding=encoding, errors="replace") as lines:
            header = lines.readline().rstrip("\r\n")
        if header.lstrip("\ufeff") != _RATINGS_HEADER:
            raise MovieLensFormatError(path, 1, f"the header {_RATINGS_HEADER!r}", header)
    table, loadtxt_error = _load_table(path, delimiter, header_lines, encoding)
    if table is not None:
        if len(table) == 0:
            raise ValueError(f"{path}: no ratings; expected lines of {expected}.")
        twice = 2 * table["rating"]
        valid = ((twice == np.round(twice)) & (twice >= 1) & (twice <= 10) if fmt == "csv"
                 else np.isin(table["rating"], (1, 2, 3, 4, 5)))
        for column, low in (("user", 0), ("movie", 0), ("timestamp", 1 - _EXACT_INTEGERS)):
            values = table[column]
            valid &= (values == np.floor(values)) & (values >= low) & (values < _EXACT_INTEGERS)
        if valid.all():
            users, movies, timestamps = (table[column].astype(np.int64) for column in ("user", "movie", "timestamp"))
            item_index = rows_of(known_movies, movies)
            if (item_index >= 0).all():
                return users, item_index, table["rating"], timestamps
    known = set(known_movies.tolist())
    checks = (_is_integer, lambda text: _is_integer(text) and int(float(text)) in known, is_rating, _is_timestamp)
    _raise_first_bad_line(path, encoding, delimiter, header_lines, checks, expected)
    # Only where np.loadtxt and the line checks disagree on what a number may look like.
    raise ValueError(f"{path}: {loadtxt_error}; expected lines of {expected}.")


def _load_table(path, delimiter, header_lines, encoding):
    """The file as a `_RATING_COLUMNS` array and None, or None and why np.loadtxt rejects it."""
    source = path
    if len(delimiter) > 1:  # np.loadtxt splits on one character only
        with open(path, encoding=encoding) as file:
            text = file.read()
        if "\t" in text:
            return None, "a tab in a '::'-separated file"
        source = io.StringIO(text.replace(delimiter, "\t"))
        delimiter = "\t"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input contained no data")
            return np.loadtxt(source, dtype=_RATING_COLUMNS, delimiter=delimiter, skiprows=header_lines,
                              comments=None, encoding=encoding, ndmin=1), None
    except ValueError as error:  # UnicodeDecodeError included
        return None, str(error)


def _raise_first_bad_line(path, encoding, delimiter, header_lines, checks, expected):
    """Raises `MovieLensFormatError` at the first non-empty line failing ``checks`` (one per field).

    Empty lines are skipped, as np.loadtxt skips them; a line of spaces fails, as it does there.
    """
    for number, line in _decoded_lines(path, encoding):
        line = line.rstrip("\r\n")
        if number > header_lines and line:
            fields = line.split(delimiter)
            if len(fields) != len(checks) or not all(check(field) for check, field in zip(checks, fields)):
                raise MovieLensFormatError(path, number, expected, line)


# ---------------------------------------------------------------------------------------------
# Movies files


def _decoded_lines(path, encoding):
    """(line number, line with its newline) of a file, raising on a line that is not ``encoding``."""
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                yield number, raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise MovieLensFormatError(path, number, f"{encoding} text ({error.reason})",
                                           raw.decode(encoding, errors="replace").rstrip("\r\n")) from None


def _movie_table(path, rows):
    """The items dict of ``(line number, line, movie id, title, genres)`` rows, ids unique."""
    movie_ids, titles, genres, line_of = [], [], [], {}
    for number, line, movie_id, title, genre in rows:
        if movie_id in line_of:
            raise MovieLensFormatError(path, number, f"a movie id not listed before (line {line_of[movie_id]} "
                                                     f"lists {movie_id})", line)
        line_of[movie_id] = number
        movie_ids.append(movie_id)
        titles.append(title)
        genres.append(genre)
    if not movie_ids:
        raise ValueError(f"{path}: no movies.")
    return {"movie_id": np.array(movie_ids, dtype=np.int64), "title": np.array(titles, dtype=object),
            "genres": np.array(genres, dtype=object)}


def _read_u_item(path):
    expected = ("24 '|'-separated fields: movie id|title|release date|video release date|IMDb URL|"
                "19 genre flags 0 or 1")

    def rows():
        for number, line in _decoded_lines(path, "latin-1"):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            flags = fields[5:]
            if len(fields) != 24 or not _is_integer(fields[0]) or not set(flags) <= {"0", "1"}:
                raise MovieLensFormatError(path, number, expected, line)
            genres = "|".join(genre for genre, flag in zip(MOVIELENS_GENRES, flags) if flag == "1")
            yield number, line, int(float(fields[0])), fields[1], genres

    return _movie_table(path, rows())


def _read_movies_dat(path):
    expected = "movie id::title::genres, the id an integer"

    def rows():
        for number, line in _decoded_lines(path, "latin-1"):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            movie_id, separator, rest = line.partition("::")
            title, second_separator, genres = rest.rpartition("::")
            if not (separator and second_separator and _is_integer(movie_id)):
                raise MovieLensFormatError(path, number, expected, line)
            yield number, line, int(float(movie_id)), title, genres

    return _movie_table(path, rows())


def _read_movies_csv(path):
    expected = "movieId,title,genres (a title with commas in double quotes), the id an integer"
    current_line = [""]

    def lines():
        for _, line in _decoded_lines(path, "utf-8"):
            current_line[0] = line.rstrip("\r\n")
            yield line

    reader = csv.reader(lines(), strict=True)

    def rows():
        last_line_read = 0
        try:
            for row in reader:
                number, last_line_read = last_line_read + 1, reader.line_num  # a quoted title may span lines
                line = ",".join(row)
                if number == 1:
                    if [row[0].lstrip("\ufeff"), *row[1:]] != _MOVIES_HEADER:
                        raise MovieLensFormatError(path, 1, f"the header {','.join(_MOVIES_HEADER)!r}", line)
                elif row:
                    if len(row) != 3 or not _is_integer(row[0]):
                        raise MovieLensFormatError(path, number, expected, line)
                    yield number, line, int(float(row[0])), row[1], row[2]
        except csv.Error as error:
            raise MovieLensFormatError(path, reader.line_num, f"{expected} ({error})", current_line[0]) from None

    return _movie_table(path, rows())


# ---------------------------------------------------------------------------------------------
# TFDS


def _tfds_builder(release, data_dir):
    """The TFDS builder of ``release`` when its data is already prepared, else the reason it is not used."""
    config = _TFDS_CONFIGS.get(release)
    if config is None:
        return None, f"TFDS has no {release}"
    try:
        import tensorflow_datasets as tfds  # optional: only this path needs it
    except ImportError:
        return None, "tensorflow_datasets is not installed"
    builder = tfds.builder(f"movielens/{config}", data_dir=data_dir)
    # Prepared data has its dataset_info.json; checking it never triggers a download.
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        return None, f"movielens/{config} is not prepared in the TFDS cache ({builder.data_dir})"
    return builder, None


def _read_tfds(release, data_dir):
    builder, reason = _tfds_builder(release, data_dir)
    if builder is None:
        ratings_file, movies_file = _FORMAT_FILES[_RELEASE_FORMAT[release]]
        where = ("no `data_dir` was given" if data_dir is None else
                 f"{data_dir} holds neither {ratings_file} and {movies_file} nor a {release}/ directory with them")
        raise FileNotFoundError(f"Cannot load {release}: {where}, and {reason}.")
    genre_names = tf.constant(builder.info.features["movie_genres"].feature.names)

    def flatten(example):
        return {"user": tf.strings.to_number(example["user_id"], tf.int64),
                "movie": tf.strings.to_number(example["movie_id"], tf.int64),
                "rating": example["user_rating"], "timestamp": tf.cast(example["timestamp"], tf.int64),
                "title": example["movie_title"],
                "genres": tf.strings.reduce_join(tf.gather(genre_names, example["movie_genres"]), separator="|")}

    dataset = (builder.as_dataset(split="train", shuffle_files=False)
               .map(flatten, num_parallel_calls=tf.data.AUTOTUNE).batch(1 << 16))
    parts = {key: [] for key in ("user", "movie", "rating", "timestamp")}
    movies = {}
    for batch in dataset.as_numpy_iterator():
        for key, part in parts.items():
            part.append(batch[key])
        for movie, first in zip(*np.unique(batch["movie"], return_index=True)):
            if movie not in movies:
                movies[movie] = (batch["title"][first].decode("utf-8"), batch["genres"][first].decode("utf-8"))
    movie_ids = np.array(sorted(movies), dtype=np.int64)
    items = {"movie_id": movie_ids, "title": np.array([movies[m][0] for m in movie_ids], dtype=object),
             "genres": np.array([movies[m][1] for m in movie_ids], dtype=object)}
    columns = {key: np.concatenate(part) for key, part in parts.items()}
    return _assemble(release, builder.data_dir, columns["user"], rows_of(movie_ids, columns["movie"]),
                     columns["rating"], columns["timestamp"], items)
