// The `hdf5-pairs` plugin library: exports the dataset source through the tier-1 entry point.
#include "prefdiff/data/hdf5_pairs_source.hpp"

PREFDIFF_EXPORT_DATASET(prefdiff::data::Hdf5PairsSource)
