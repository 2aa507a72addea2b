"""The MovieLens loaders refuse ids and timestamps that are not integers or do not fit, naming the
file and the line, instead of truncating or wrapping them; duplicate (user, movie) ratings follow
one policy (the latest kept) and are counted."""

import os

import numpy as np
import pytest

from tf_freqsgd.data import MovieLensFormatError, load_movielens

U_ITEM = "".join(f"{movie}|Movie {movie} (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n"
                 for movie in (10, 20, 30))
MOVIES_DAT = "1::Toy Story (1995)::Comedy\n2::Heat (1995)::Drama\n"
MOVIES_CSV = "movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Heat (1995),Drama\n"


def write_release(directory, release, ratings):
    files = {"ml-100k": (("u.item", U_ITEM), ("u.data", ratings)),
             "ml-1m": (("movies.dat", MOVIES_DAT), ("ratings.dat", ratings)),
             "ml-latest": (("movies.csv", MOVIES_CSV), ("ratings.csv", "userId,movieId,rating,timestamp\n" + ratings))}
    for name, text in files[release]:
        with open(os.path.join(directory, name), "w", encoding="utf-8") as file:
            file.write(text)


BAD_LINES = [
    ("ml-100k", "7\t20\t4\t100\n1.9\t10\t2\t200\n", 2, "user id 1.9 (truncated to 1 before)"),
    ("ml-100k", "7\t20\t4\t100\n-4\t10\t2\t200\n", 2, "a negative user id"),
    ("ml-100k", "7\t20\t4\t100\n7\t10\t2\t99999999999999999999\n", 2, "a timestamp beyond int64 (wrapped before)"),
    ("ml-100k", "9007199254740993\t20\t4\t100\n", 1, "a user id float64 cannot hold"),
    ("ml-1m", "5::2::5::978300760\n5::1.5::1::978301968\n", 2, "movie id 1.5 (movie 1 before)"),
    ("ml-1m", "5::2::5::978300760.5\n", 1, "a fractional timestamp"),
    ("ml-latest", "1,1,4.0,5\n1,1.5,4.0,6\n", 3, "movie id 1.5 in a CSV release"),
    ("ml-latest", "1e400,1,4.0,5\n", 2, "an overflowing user id"),
]


@pytest.mark.parametrize("release,ratings,line,case", BAD_LINES, ids=[case for *_, case in BAD_LINES])
def test_non_integer_or_out_of_range_values_name_the_file_and_line(tmp_path, release, ratings, line, case):
    write_release(tmp_path, release, ratings)
    with pytest.raises(MovieLensFormatError, match=r"integers \(ids in \[0, 2\^53\)\)") as error:
        load_movielens(release, str(tmp_path))
    assert error.value.line_number == line
    assert os.path.basename(error.value.path) in ("u.data", "ratings.dat", "ratings.csv")


@pytest.mark.parametrize("release,ratings", [
    ("ml-100k", "7\t20\t4\t100\n7\t20\t2\t300\n3\t10\t5\t50\n7\t20\t1\t200\n"),
    ("ml-1m", "7::2::4::100\n7::2::2::300\n3::1::5::50\n7::2::1::200\n"),
    ("ml-latest", "7,2,4.0,100\n7,2,2.0,300\n3,1,5.0,50\n7,2,1.0,200\n"),
])
def test_duplicate_ratings_keep_the_latest_and_are_counted(tmp_path, release, ratings):
    write_release(tmp_path, release, ratings)
    record = load_movielens(release, str(tmp_path))
    assert record.duplicate_ratings == 2
    assert "duplicate_ratings=2" in repr(record)
    np.testing.assert_array_equal(record.ratings["rating"], [2.0, 5.0])  # file order of the kept lines
    np.testing.assert_array_equal(record.ratings["timestamp"], [300, 50])
    assert record.num_users == 2


def test_a_tie_keeps_the_later_line(tmp_path):
    write_release(tmp_path, "ml-100k", "7\t20\t4\t100\n7\t20\t2\t100\n")
    record = load_movielens("ml-100k", str(tmp_path))
    assert record.duplicate_ratings == 1
    np.testing.assert_array_equal(record.ratings["rating"], [2.0])


def test_a_clean_file_has_no_duplicates(tmp_path):
    write_release(tmp_path, "ml-100k", "7\t20\t4\t100\n3\t10\t2\t200\n")
    assert load_movielens("ml-100k", str(tmp_path)).duplicate_ratings == 0
