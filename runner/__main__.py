import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our one-line errors

from runner.cli import main

raise SystemExit(main())
