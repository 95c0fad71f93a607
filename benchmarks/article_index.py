# ruff: noqa: SIM115, S301, RUF005 - the article's code as published
"""The article's ``index.py``, as published: dHash every ``*.jpg`` of a folder into a shelve.

From Real Python's "Fingerprinting Images for Near-Duplicate Detection"; only the comments are
shortened. ``lookalike bench index`` runs it as the article does (``python index.py --dataset
DIR --shelve FILE``, one process) beside ``lookalike index`` on the same files.
"""

import argparse
import glob
import shelve

import imagehash
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("-d", "--dataset", required=True, help="path to input dataset of images")
ap.add_argument("-s", "--shelve", required=True, help="output shelve database")
args = vars(ap.parse_args())

# open the shelve database
db = shelve.open(args["shelve"], writeback=True)

# loop over the image dataset
for imagePath in glob.glob(args["dataset"] + "/*.jpg"):
    # load the image and compute the difference hash
    image = Image.open(imagePath)
    h = str(imagehash.dhash(image))

    # extract the filename from the path and update the database using the hash as the key
    # and the filename append to the list of values
    filename = imagePath[imagePath.rfind("/") + 1 :]
    db[h] = db.get(h, []) + [filename]

# close the shelf database
db.close()
