"""load_movielens: the synthetic default, raw files of every release format, TFDS, and every error."""

import os
import re
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.data import (MOVIELENS_GENRES, MovieLensFormatError, load_movielens, make_interactions,
                             zipf_probabilities)

ML100K_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ml-100k")
needs_ml100k = pytest.mark.skipif(not os.path.exists(os.path.join(ML100K_DIR, "u.data")),
                                  reason="MovieLens 100K is not at ../shared/data/ml-100k")


def check_record(record):
    """The interface every source shares: dtypes, contiguous indices, ranges, labels."""
    ratings, items = record.ratings, record.items
    assert set(ratings) == {"user_id", "item_id", "rating", "timestamp", "label"}
    assert ratings["user_id"].dtype == np.int64 and ratings["item_id"].dtype == np.int64
    assert ratings["rating"].dtype == np.float32 and ratings["label"].dtype == np.float32
    assert ratings["timestamp"].dtype == np.int64
    assert 0 <= ratings["user_id"].min() and ratings["user_id"].max() < record.num_users
    assert 0 <= ratings["item_id"].min() and ratings["item_id"].max() < record.num_items
    assert 0.5 <= ratings["rating"].min() and ratings["rating"].max() <= 5
    np.testing.assert_array_equal(ratings["label"], ratings["rating"] > 3)
    assert len({len(value) for value in ratings.values()}) == 1
    assert items["movie_id"].dtype == np.int64 and len(np.unique(items["movie_id"])) == record.num_items
    assert items["title"].dtype == object and items["genres"].dtype == object
    assert len(items["title"]) == len(items["genres"]) == record.num_items
    users = record.users["user_id"]
    assert users.dtype == np.int64 and users.shape == (record.num_users,)
    assert (np.diff(users) > 0).all()  # indices rank the raw ids


# ---------------------------------------------------------------------------------------------
# Synthetic


@pytest.fixture(scope="module")
def synthetic():
    return load_movielens()


def test_synthetic_default_is_make_interactions_with_items(synthetic):
    check_record(synthetic)
    assert (synthetic.name, synthetic.source) == ("synthetic-100k", "synthetic")
    assert (len(synthetic.ratings["rating"]), synthetic.num_users, synthetic.num_items) == (100_000, 943, 1682)
    np.testing.assert_array_equal(synthetic.users["user_id"], np.arange(1, 944))  # raw id = index + 1
    expected = make_interactions(seed=0)
    for key in expected:
        np.testing.assert_array_equal(synthetic.ratings[key], expected[key])


def test_synthetic_is_deterministic_by_seed(synthetic):
    again, other = load_movielens(seed=0), load_movielens(seed=1)
    for part in ("ratings", "items"):
        for key, value in getattr(synthetic, part).items():
            np.testing.assert_array_equal(getattr(again, part)[key], value)
    assert not np.array_equal(other.ratings["item_id"], synthetic.ratings["item_id"])
    assert not np.array_equal(other.items["genres"], synthetic.items["genres"])


def test_synthetic_items_look_like_movielens(synthetic):
    items = synthetic.items
    np.testing.assert_array_equal(items["movie_id"], np.arange(1, 1683))
    for movie_id, title in zip(items["movie_id"][:50], items["title"][:50]):
        match = re.fullmatch(r"Synthetic Movie (\d+) \((\d{4})\)", title)
        assert match and int(match.group(1)) == movie_id and 1919 <= int(match.group(2)) <= 1998
    genre_lists = [genres.split("|") for genres in items["genres"]]
    assert all(1 <= len(genres) <= 6 and len(set(genres)) == len(genres) for genres in genre_lists)
    assert {genre for genres in genre_lists for genre in genres} <= set(MOVIELENS_GENRES)
    # In MovieLens 100K's proportions: Drama is the commonest genre, about half the movies carry one.
    counts = {genre: sum(genre in genres for genres in genre_lists) for genre in MOVIELENS_GENRES}
    assert max(counts, key=counts.get) == "Drama"
    assert 0.4 < np.mean([len(genres) == 1 for genres in genre_lists]) < 0.6


def test_synthetic_popularity_is_zipf_on_both_sides(synthetic):
    # The log-log slope of count against popularity rank recovers each side's exponent.
    for key, size, exponent in (("item_id", 1682, 1.1), ("user_id", 943, 0.6)):
        counts = np.sort(np.bincount(synthetic.ratings[key], minlength=size))[::-1][:200]
        slope = np.polyfit(np.log(np.arange(1, 201)), np.log(counts), 1)[0]
        assert abs(slope + exponent) < 0.1, (key, slope)
    item_counts = np.bincount(synthetic.ratings["item_id"], minlength=1682)
    assert (item_counts < 5).mean() > 0.05  # a long tail of rare items


def test_zipf_probabilities_follow_rank():
    probabilities = zipf_probabilities(10, 1.0, np.random.default_rng(0))
    np.testing.assert_allclose(np.sort(probabilities)[::-1], (1 / np.arange(1, 11)) / (1 / np.arange(1, 11)).sum())


def test_synthetic_sizes():
    small = load_movielens("synthetic", num_ratings=5000, seed=2)
    check_record(small)
    assert (len(small.ratings["rating"]), small.num_users, small.name) == (5000, 943, "synthetic-100k-n5000")
    large = load_movielens("synthetic-1m")
    check_record(large)
    assert (len(large.ratings["rating"]), large.num_users, large.num_items) == (1_000_209, 6040, 3706)
    assert large.name == "synthetic-1m"


# ---------------------------------------------------------------------------------------------
# MovieLens 100K (real files, when present)


@needs_ml100k
def test_ml100k_counts_and_content():
    record = load_movielens("ml-100k", ML100K_DIR)
    check_record(record)
    assert (len(record.ratings["rating"]), record.num_users, record.num_items) == (100_000, 943, 1682)
    assert set(np.unique(record.ratings["rating"])) == {1, 2, 3, 4, 5}
    # u.data's first line is "196 242 3 881250949": user 196 is index 195 of users 1..943.
    assert (record.ratings["user_id"][0], record.ratings["item_id"][0]) == (195, 241)
    assert record.users["user_id"][195] == 196
    assert record.ratings["timestamp"][0] == 881250949
    assert record.items["title"][0] == "Toy Story (1995)"
    assert record.items["genres"][0] == "Animation|Children's|Comedy"
    assert record.name == "ml-100k"


@needs_ml100k
def test_ml100k_found_by_auto_and_from_the_parent_directory():
    parent = os.path.dirname(os.path.normpath(ML100K_DIR))
    for record in (load_movielens("auto", ML100K_DIR), load_movielens("ml-100k", parent)):
        assert (record.name, len(record.ratings["rating"]), record.num_items) == ("ml-100k", 100_000, 1682)


# ---------------------------------------------------------------------------------------------
# Fixture files of each format


def write(directory, name, text, encoding="utf-8"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


GENRE_FLAGS = {"Comedy": "0|0|0|0|0|1" + "|0" * 13, "Drama": "0" + "|0" * 7 + "|1" + "|0" * 10}


def write_100k(directory, data=None, item=None):
    write(directory, "u.item", item if item is not None else (
        f"10|Café Society (1995)|01-Jan-1995||http://x|{GENRE_FLAGS['Comedy']}\n"
        f"20|Heat (1995)|01-Jan-1995||http://y|{GENRE_FLAGS['Drama']}\n"
        f"30|Unrated (1990)|01-Jan-1990||http://z|{GENRE_FLAGS['Drama']}\n"), "latin-1")
    write(directory, "u.data", data if data is not None else "7\t20\t4\t100\n3\t10\t2\t200\n7\t10\t5\t300\n")


def write_1m(directory, ratings=None, movies=None):
    write(directory, "movies.dat", movies if movies is not None else
          "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n", "latin-1")
    write(directory, "ratings.dat", ratings if ratings is not None else
          "5::2::5::978300760\n1::1::3::978302109\n5::1::1::978301968\n")


def write_csv(directory, ratings=None, movies=None):
    write(directory, "movies.csv", movies if movies is not None else
          "movieId,title,genres\n"
          "1,Toy Story (1995),Adventure|Animation\n"
          '11,"American President, The (1995)",Comedy|Drama|Romance\n'
          '193609,"Andrew Dice Clay: Dice Rules (1991)",(no genres listed)\n'
          "5,Amélie (2001),Comedy\n")
    write(directory, "ratings.csv", ratings if ratings is not None else
          "userId,movieId,rating,timestamp\n1,11,3.5,964982703\n1,5,0.5,964981247\n42,193609,5.0,1537109082\n")


def test_100k_format(tmp_path):
    write_100k(tmp_path)
    record = load_movielens("ml-100k", str(tmp_path))
    check_record(record)
    np.testing.assert_array_equal(record.ratings["user_id"], [1, 0, 1])  # raw users 3, 7 -> 0, 1
    np.testing.assert_array_equal(record.users["user_id"], [3, 7])
    np.testing.assert_array_equal(record.ratings["item_id"], [1, 0, 0])
    np.testing.assert_array_equal(record.ratings["rating"], [4, 2, 5])
    np.testing.assert_array_equal(record.ratings["timestamp"], [100, 200, 300])
    assert list(record.items["title"]) == ["Café Society (1995)", "Heat (1995)", "Unrated (1990)"]
    assert list(record.items["genres"]) == ["Comedy", "Drama", "Drama"]
    assert (record.num_users, record.num_items) == (2, 3)  # the unrated movie keeps its row


def test_1m_format(tmp_path):
    write_1m(tmp_path / "ml-1m")
    for record in (load_movielens("ml-1m", str(tmp_path)), load_movielens("auto", str(tmp_path / "ml-1m"))):
        check_record(record)
        assert record.name == "ml-1m"
        np.testing.assert_array_equal(record.ratings["user_id"], [1, 0, 1])
        np.testing.assert_array_equal(record.ratings["item_id"], [1, 0, 0])
        np.testing.assert_array_equal(record.ratings["rating"], [5, 3, 1])
        np.testing.assert_array_equal(record.ratings["timestamp"], [978300760, 978302109, 978301968])
        assert list(record.items["title"]) == ["Toy Story (1995)", "Amélie (2001)"]
        assert list(record.items["genres"]) == ["Animation|Children's|Comedy", "Comedy|Romance"]


def test_csv_format_with_quoted_titles_and_half_stars(tmp_path):
    write_csv(tmp_path / "ml-25m")
    record = load_movielens("ml-25m", str(tmp_path))
    check_record(record)
    np.testing.assert_array_equal(record.ratings["rating"], [3.5, 0.5, 5.0])
    np.testing.assert_array_equal(record.ratings["label"], [1, 0, 1])
    np.testing.assert_array_equal(record.ratings["item_id"], [1, 3, 2])
    np.testing.assert_array_equal(record.ratings["user_id"], [0, 0, 1])
    np.testing.assert_array_equal(record.items["movie_id"], [1, 11, 193609, 5])
    assert record.items["title"][1] == "American President, The (1995)"
    assert record.items["title"][3] == "Amélie (2001)"
    assert record.items["genres"][2] == "(no genres listed)"
    # "auto" names a CSV release by its directory, and falls back to ml-latest.
    assert load_movielens("auto", str(tmp_path / "ml-25m")).name == "ml-25m"
    write_csv(tmp_path / "my-copy")
    assert load_movielens("auto", str(tmp_path / "my-copy")).name == "ml-latest"


def test_ids_too_large_for_lookup_tables(tmp_path):
    write_csv(tmp_path, ratings="userId,movieId,rating,timestamp\n10000000000000,7,4.0,1\n3,1000000000000,2.0,2\n"
                                "3,7,4.5,3\n",
              movies="movieId,title,genres\n1000000000000,Big (1988),Comedy\n7,Se7en (1995),Thriller\n")
    record = load_movielens("ml-latest", str(tmp_path))
    np.testing.assert_array_equal(record.ratings["user_id"], [1, 0, 0])
    np.testing.assert_array_equal(record.users["user_id"], [3, 10000000000000])
    np.testing.assert_array_equal(record.ratings["item_id"], [1, 0, 1])
    write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n3,1000000000001,2.0,2\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings.csv, line 2: expected .*a movieId listed in movies.csv"):
        load_movielens("ml-latest", str(tmp_path))


def test_csv_byte_order_mark_and_multiline_title(tmp_path):
    write_csv(tmp_path, ratings="\ufeffuserId,movieId,rating,timestamp\n1,2,4.0,10\n",
              movies='\ufeffmovieId,title,genres\n2,"Two\nLines (2000)",Drama\n3,Three (2001),Drama\n')
    record = load_movielens("ml-latest-small", str(tmp_path))
    assert list(record.items["title"]) == ["Two\nLines (2000)", "Three (2001)"]
    np.testing.assert_array_equal(record.ratings["item_id"], [0])


def test_num_ratings_samples_a_release(tmp_path):
    rng = np.random.default_rng(0)
    pairs = rng.permutation([(u, i) for u in range(1, 150) for i in (10, 20, 30)])[:400]
    lines = [f"{u}\t{i}\t{r}\t{t}" for t, ((u, i), r) in enumerate(zip(pairs, rng.integers(1, 6, 400)))]
    write_100k(tmp_path, data="\n".join(lines) + "\n")
    full = load_movielens("ml-100k", str(tmp_path))
    sample = load_movielens("ml-100k", str(tmp_path), num_ratings=100, seed=3)
    check_record(sample)
    assert sample.name == "ml-100k-n100" and len(sample.ratings["rating"]) == 100
    assert (np.diff(sample.ratings["timestamp"]) > 0).all()  # file order kept
    assert sample.num_users == len(np.unique(sample.ratings["user_id"])) <= full.num_users
    # Re-indexed users keep their raw ids: each sampled rating is a (raw user, movie) pair of the file.
    def raw_pairs(record):
        return set(zip(record.users["user_id"][record.ratings["user_id"]].tolist(), record.ratings["item_id"].tolist()))

    assert raw_pairs(sample) <= raw_pairs(full)
    np.testing.assert_array_equal(load_movielens("ml-100k", str(tmp_path), num_ratings=100, seed=3)
                                  .ratings["timestamp"], sample.ratings["timestamp"])
    with pytest.raises(ValueError, match=r"`num_ratings` \(401\) exceeds the 400 ratings of ml-100k"):
        load_movielens("ml-100k", str(tmp_path), num_ratings=401)


# ---------------------------------------------------------------------------------------------
# Malformed files: the error names the file, the line and what was expected


@pytest.mark.parametrize("data,line,expected", [
    ("7\t20\t4\t100\n3\t10\t2\n", 2, "user<tab>movie<tab>rating<tab>timestamp"),
    ("7\t20\t4\t100\n\n3\tten\t2\t5\n", 3, "integers"),
    ("7\t20\t6\t100\n", 1, "a rating in 1..5"),
    ("7\t20\t4\t100\n7\t20\t3.5\t100\n", 2, "a rating in 1..5"),
    ("7\t20\t4\t100\n7\t99\t3\t100\n", 2, "a movie id listed in u.item"),
    ("7\t20\t4\t100\n   \n", 2, "user<tab>movie"),  # np.loadtxt rejects a line of spaces too
    ("7\t20\t4\t1_000\n", 1, "user<tab>movie"),  # Python's int() takes "1_000", np.loadtxt does not
])
def test_bad_u_data_line(tmp_path, data, line, expected):
    write_100k(tmp_path, data=data)
    with pytest.raises(MovieLensFormatError, match=re.escape(f"u.data, line {line}: expected ") + ".*"
                       + re.escape(expected)) as error:
        load_movielens("ml-100k", str(tmp_path))
    assert error.value.line_number == line and error.value.path.endswith("u.data")


@pytest.mark.parametrize("item,line", [
    ("10|Title (1995)|01-Jan-1995||http://x|" + GENRE_FLAGS["Comedy"] + "\n10|Short|line\n", 2),
    ("x|Title (1995)|01-Jan-1995||http://x|" + GENRE_FLAGS["Comedy"] + "\n", 1),
    ("10|Title (1995)|01-Jan-1995||http://x|" + GENRE_FLAGS["Comedy"].replace("1", "2") + "\n", 1),
])
def test_bad_u_item_line(tmp_path, item, line):
    write_100k(tmp_path, item=item, data="1\t10\t3\t5\n")
    with pytest.raises(MovieLensFormatError, match=re.escape(f"u.item, line {line}: expected 24 '|'-separated")):
        load_movielens("ml-100k", str(tmp_path))


def test_duplicate_movie_id_names_both_lines(tmp_path):
    write_1m(tmp_path, movies="1::A (1995)::Drama\n2::B (1995)::Drama\n1::C (1995)::Drama\n")
    with pytest.raises(MovieLensFormatError, match=r"movies.dat, line 3: expected a movie id not listed before "
                                                   r"\(line 1 lists 1\)"):
        load_movielens("ml-1m", str(tmp_path))


@pytest.mark.parametrize("ratings,movies,message", [
    ("5::2::5::978300760\n5::2::5\n", None, r"ratings.dat, line 2: expected user::movie::rating::timestamp"),
    ("5::2::5::978300760\n5:2::5::1\n", None, r"ratings.dat, line 2: expected user::movie::rating::timestamp"),
    ("5::2::5::978300760\n5\t2::5::1::1\n", None, r"ratings.dat, line 2: expected"),
    ("5::2::5::978300760\n5::2::5::1\t\n", None, r"ratings.dat, line 2: expected"),
    ("5::2::0::978300760\n", None, r"ratings.dat, line 1: expected .*a rating in 1..5"),
    (None, "1::Toy Story (1995)::Comedy\n2::No genres\n", r"movies.dat, line 2: expected movie id::title::genres"),
])
def test_bad_1m_line(tmp_path, ratings, movies, message):
    write_1m(tmp_path, ratings=ratings, movies=movies)
    with pytest.raises(MovieLensFormatError, match=message):
        load_movielens("ml-1m", str(tmp_path))


@pytest.mark.parametrize("ratings,movies,message", [
    ("userId,movieId,rating\n", None, r"ratings.csv, line 1: expected the header 'userId,movieId,rating,timestamp'"),
    ("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,1,4.2,6\n", None,
     r"ratings.csv, line 3: expected .*a multiple of 0.5 in 0.5..5"),
    ("userId,movieId,rating,timestamp\n1,1,0,5\n", None, r"ratings.csv, line 2: expected .*a multiple of 0.5"),
    ("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,2,4.0,6\n", None,
     r"ratings.csv, line 3: expected .*a movieId listed in movies.csv; got '1,2,4.0,6'"),
    ("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,1,4.0,6,7\n", None, r"ratings.csv, line 3: expected userId"),
    (b"userId,movieId,rating,timestamp\n1,1,4.0,5\n1,1,4.0,6\xff\n", None,
     r"ratings.csv, line 3: expected utf-8 text \(invalid start byte\); got '1,1,4.0,6\ufffd'"),
    (None, "movieId,name,genres\n", r"movies.csv, line 1: expected the header 'movieId,title,genres'"),
    (None, "movieId,title,genres\n1,A (1995),Drama\n1.5,B (1995),Drama\n", r"movies.csv, line 3: expected movieId"),
    (None, 'movieId,title,genres\n1,A (1995),Drama\n2,"B, The" (1995),Drama\n', r"movies.csv, line 3: expected .*"
                                                                                r"','? expected after '\"'"),
    (None, b"movieId,title,genres\n1,A (1995),Drama\n2,B \xe9 (1995),Drama\n", r"movies.csv, line 3: expected "
                                                                             r"utf-8 text \(invalid"),
])
def test_bad_csv_line(tmp_path, ratings, movies, message):
    write_csv(tmp_path, ratings=ratings or "userId,movieId,rating,timestamp\n1,1,4.0,5\n", movies=movies)
    with pytest.raises(MovieLensFormatError, match=message):
        load_movielens("ml-latest", str(tmp_path))


def test_empty_files(tmp_path):
    write_csv(tmp_path / "a", ratings="userId,movieId,rating,timestamp\n")
    with pytest.raises(ValueError, match=r"ratings.csv: no ratings; expected lines of userId,movieId"):
        load_movielens("ml-latest", str(tmp_path / "a"))
    write_1m(tmp_path / "b", movies="")
    with pytest.raises(ValueError, match=r"movies.dat: no movies"):
        load_movielens("ml-1m", str(tmp_path / "b"))


# ---------------------------------------------------------------------------------------------
# Missing files, bad arguments, TFDS


def test_missing_file_is_named(tmp_path):
    write(tmp_path, "u.data", "1\t1\t3\t5\n")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'u.item'}: not found; ml-100k needs "
                                                          "u.data and u.item")):
        load_movielens("ml-100k", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"u.item: not found"):
        load_movielens("auto", str(tmp_path))


def test_no_files_and_no_tfds(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails, as where it is not installed
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Cannot load ml-25m: {tmp_path} holds neither ratings.csv and movies.csv nor a ml-25m/ directory "
            "with them, and tensorflow_datasets is not installed.")):
        load_movielens("ml-25m", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"Cannot load ml-100k: no `data_dir` was given, and "
                                                r"tensorflow_datasets is not installed"):
        load_movielens("ml-100k")


@pytest.mark.parametrize("kwargs,error,message", [
    ({"dataset": "ml-10m"}, ValueError, r"`dataset` must be one of \("),
    ({"num_ratings": 0}, ValueError, r"`num_ratings` must be a positive integer or None; got 0"),
    ({"num_ratings": 1e5}, ValueError, r"`num_ratings` must be a positive integer"),
    ({"dataset": "ml-1m", "data_dir": "/no/such/dir"}, FileNotFoundError, r"`data_dir` '/no/such/dir' is not a "
                                                                         r"directory"),
    ({"dataset": "auto"}, ValueError, r"dataset='auto' needs `data_dir`"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_movielens(**kwargs)


def test_auto_without_or_with_several_releases(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no MovieLens ratings file \(u.data, ratings.dat or "
                                                r"ratings.csv\)"):
        load_movielens("auto", str(tmp_path))
    write_100k(tmp_path)
    write_1m(tmp_path)
    with pytest.raises(ValueError, match=r"holds the ratings files of several releases "
                                         r"\(\['u.data', 'ratings.dat'\]\)"):
        load_movielens("auto", str(tmp_path))


class FakeBuilder:
    """The part of a TFDS builder of movielens/*-ratings that the loader uses (features as in TFDS)."""

    genre_names = ["Action", "Comedy", "Drama", "(no genres listed)"]

    def __init__(self, data_dir):
        self.data_dir = data_dir
        label = types.SimpleNamespace(names=self.genre_names)
        self.info = types.SimpleNamespace(features={"movie_genres": types.SimpleNamespace(feature=label)})

    def as_dataset(self, split, shuffle_files):
        assert (split, shuffle_files) == ("train", False)
        rows = [("12", "7", 4.0, 50, "Seven (1995)", [1, 2]), ("3", "2", 2.0, 40, "Two (1990)", [0]),
                ("12", "2", 5.0, 60, "Two (1990)", [0])]
        return tf.data.Dataset.from_generator(
            lambda: ({"user_id": u, "movie_id": m, "user_rating": r, "timestamp": t, "movie_title": title,
                      "movie_genres": genres} for u, m, r, t, title, genres in rows),
            output_signature={"user_id": tf.TensorSpec((), tf.string), "movie_id": tf.TensorSpec((), tf.string),
                              "user_rating": tf.TensorSpec((), tf.float32), "timestamp": tf.TensorSpec((), tf.int64),
                              "movie_title": tf.TensorSpec((), tf.string),
                              "movie_genres": tf.TensorSpec((None,), tf.int64)})


def test_tfds_cache_is_read_without_download(tmp_path, monkeypatch):
    requested = []

    def builder(name, data_dir=None):
        requested.append(name)
        return FakeBuilder(str(tmp_path / "movielens" / name.split("/")[1]))

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(builder=builder))
    with pytest.raises(FileNotFoundError, match=r"Cannot load ml-1m: no `data_dir` was given, and movielens/1m-ratings "
                                                r"is not prepared in the TFDS cache"):
        load_movielens("ml-1m")
    with pytest.raises(FileNotFoundError, match=r"and TFDS has no ml-latest"):
        load_movielens("ml-latest")
    write(tmp_path / "movielens" / "1m-ratings", "dataset_info.json", "{}")
    record = load_movielens("ml-1m")
    check_record(record)
    assert requested == ["movielens/1m-ratings", "movielens/1m-ratings"]
    assert record.source == str(tmp_path / "movielens" / "1m-ratings")
    np.testing.assert_array_equal(record.items["movie_id"], [2, 7])
    assert list(record.items["title"]) == ["Two (1990)", "Seven (1995)"]
    assert list(record.items["genres"]) == ["Action", "Comedy|Drama"]
    np.testing.assert_array_equal(record.ratings["user_id"], [1, 0, 1])
    np.testing.assert_array_equal(record.ratings["item_id"], [1, 0, 0])
    np.testing.assert_array_equal(record.ratings["rating"], [4, 2, 5])
