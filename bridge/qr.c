/*
 * bridge/qr.c - QR code to PNG (see qr.h): libqrencode gives the modules, libpng writes an 8-bit
 * grayscale image into memory.
 */
#include "bridge/qr.h"

#include <png.h>
#include <qrencode.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define QUIET 4 /* modules of white border, as the QR standard asks */

static void png_write_buf(png_structp png, png_bytep data, png_size_t len)
{
    wb_buf *out = png_get_io_ptr(png);
    if (!wb_buf_append(out, data, len)) png_error(png, "out of memory");
}

static void png_flush_none(png_structp png)
{
    (void)png;
}

int br_qr_png(const char *text, int scale, wb_buf *out)
{
    if (!text || scale < 1 || scale > 64) return -1;
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
    if (!qr) return -1;
    int size = (qr->width + 2 * QUIET) * scale;
    png_bytep row = malloc((size_t)size);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    size_t start = out->len;
    if (!row || !png || !info) goto fail;
    if (setjmp(png_jmpbuf(png))) goto fail;
    png_set_write_fn(png, out, png_write_buf, png_flush_none);
    png_set_IHDR(png, info, (png_uint_32)size, (png_uint_32)size, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < size; y++) {
        int my = y / scale - QUIET;
        for (int x = 0; x < size; x++) {
            int mx = x / scale - QUIET;
            bool dark = mx >= 0 && my >= 0 && mx < qr->width && my < qr->width &&
                        (qr->data[my * qr->width + mx] & 1);
            row[x] = dark ? 0 : 255;
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    QRcode_free(qr);
    return 0;
fail:
    if (png) png_destroy_write_struct(&png, info ? &info : NULL);
    free(row);
    QRcode_free(qr);
    out->len = start;
    return -1;
}
