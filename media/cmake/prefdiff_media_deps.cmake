# The system libraries of media/, as imported targets prefdiff::icu, prefdiff::pcre2, prefdiff::png,
# prefdiff::jpeg, prefdiff::webp, prefdiff::exif. All are Debian packages pinned in debian-packages.lock
# (./quickstart.sh setup installs them); found with find_path/find_library so pkg-config is not needed.
include_guard(GLOBAL)

function(_prefdiff_media_missing what package)
  message(FATAL_ERROR "${what} not found. HINT: install the Debian package ${package} (pinned in "
                      "debian-packages.lock; './quickstart.sh setup' installs every pin), or point "
                      "CMAKE_PREFIX_PATH at your own build of it.")
endfunction()

# A library found by header + library names, as an imported target.
function(_prefdiff_media_library target header libs package)
  string(MAKE_C_IDENTIFIER "${target}" _id)
  find_path(PREFDIFF_${_id}_INCLUDE_DIR ${header})
  set(_paths)
  foreach(_lib ${libs})
    find_library(PREFDIFF_${_id}_${_lib}_LIBRARY NAMES ${_lib})
    if(NOT PREFDIFF_${_id}_${_lib}_LIBRARY)
      _prefdiff_media_missing("library ${_lib} (for ${target})" ${package})
    endif()
    list(APPEND _paths ${PREFDIFF_${_id}_${_lib}_LIBRARY})
  endforeach()
  if(NOT PREFDIFF_${_id}_INCLUDE_DIR)
    _prefdiff_media_missing("header ${header} (for ${target})" ${package})
  endif()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${PREFDIFF_${_id}_INCLUDE_DIR}"
                                             INTERFACE_LINK_LIBRARIES "${_paths}")
endfunction()

# ICU (Unicode normalisation and Python-compatible lower-casing for the tokenizer's text clean-up).
find_package(ICU COMPONENTS uc QUIET)
if(NOT ICU_FOUND)
  _prefdiff_media_missing("ICU (libicuuc)" libicu-dev)
endif()
add_library(prefdiff::icu INTERFACE IMPORTED GLOBAL)
set_target_properties(prefdiff::icu PROPERTIES INTERFACE_LINK_LIBRARIES ICU::uc)

# PCRE2: 32-bit code units for text (one unit per code point, as Python's str), 8-bit for byte patterns.
_prefdiff_media_library(prefdiff::pcre2 pcre2.h "pcre2-32;pcre2-8" libpcre2-dev)

find_package(PNG QUIET)
if(NOT PNG_FOUND)
  _prefdiff_media_missing("libpng" libpng-dev)
endif()
add_library(prefdiff::png INTERFACE IMPORTED GLOBAL)
set_target_properties(prefdiff::png PROPERTIES INTERFACE_LINK_LIBRARIES PNG::PNG)

find_package(JPEG QUIET)
if(NOT JPEG_FOUND)
  _prefdiff_media_missing("libjpeg (libjpeg-turbo)" libjpeg62-turbo-dev)
endif()
add_library(prefdiff::jpeg INTERFACE IMPORTED GLOBAL)
set_target_properties(prefdiff::jpeg PROPERTIES INTERFACE_LINK_LIBRARIES JPEG::JPEG)

# libwebp decodes still images; libwebpdemux gives the first frame of animated files.
_prefdiff_media_library(prefdiff::webp webp/decode.h "webpdemux;webp" libwebp-dev)
_prefdiff_media_library(prefdiff::exif libexif/exif-data.h "exif" libexif-dev)
