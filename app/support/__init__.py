"""Generic utilities any layer of app/ may import (they import nothing of app/)."""
