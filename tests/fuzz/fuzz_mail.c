/*
 * fuzz_mail: libFuzzer target for the message model. The input is a message; it is parsed
 * one-shot and in chunks whose sizes come from the first input byte, the two stored parses must be
 * identical, and everything downstream (view, ENVELOPE, BODYSTRUCTURE, sections, BINARY decoding,
 * body text) runs over it. ASan/UBSan catch the rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/mail/mail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mail_buf a = { 0 }, b = { 0 }, out = { 0 };
    const char *err;
    struct mail_limits lim;
    mail_limits_default(&lim);
    lim.max_depth = 20;
    lim.max_parts = 500;
    if (mail_parse(data, size, &lim, &a, &err) != 0)
        abort();
    size_t chunk = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
    struct mail_parser *p = mail_parser_new(&lim);
    for (size_t off = 0; off < size; off += chunk)
        mail_parser_feed(p, data + off, size - off < chunk ? size - off : chunk);
    if (mail_parser_finish(p, &b, &err) != 0)
        abort();
    mail_parser_free(&p);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort(); /* chunking must never change the result */

    struct mail_view *v;
    if (mail_view_open(a.data, a.len, &v, &err) != 0)
        abort();
    mail_render_bodystructure(v, MAIL_RENDER_EXTENSIONS | MAIL_RENDER_GLOBAL, &out);
    mail_render_bodystructure(v, 0, &out);
    for (uint32_t i = 0; i < mail_view_part_count(v); i++) {
        const struct mail_part *part = mail_view_part(v, i);
        if (part->body_offset + part->body_size > size || part->header_offset + part->header_size > size)
            abort();
        if (part->envelope != NULL)
            mail_render_envelope(v, part, MAIL_RENDER_UTF8, &out);
        mail_buf_reset(&out);
        struct mail_decoder d;
        mail_decoder_init(&d, mail_cte_parse(part->encoding.data, part->encoding.len));
        mail_decode_all(d.cte, data + part->body_offset, part->body_size, &out);
        if (part->kind == MAIL_PART_LEAF && part->decoded_size_known && d.cte != MAIL_CTE_UNKNOWN &&
            out.len != part->decoded_size)
            abort();
        if (mail_part_is_searchable_text(part)) {
            struct mail_text_decoder t;
            mail_buf_reset(&out);
            mail_text_decoder_init(&t, part);
            mail_text_decoder_feed(&t, data + part->body_offset, part->body_size, &out);
            mail_text_decoder_finish(&t, &out);
            mail_text_decoder_free(&t);
            (void)mail_text_contains(out.data, out.len, (const uint8_t *)"x\xc3\xa9", 3);
        }
        if (part->envelope != NULL) {
            const struct mail_str *s = &part->envelope[MAIL_ENV_SUBJECT];
            mail_buf_reset(&out);
            mail_base_subject(s->data, s->len, &out);
            int64_t t;
            int tz;
            const struct mail_str *dt = &part->envelope[MAIL_ENV_DATE];
            (void)mail_date_parse(dt->data, dt->len, &t, &tz, &err);
        }
    }
    static const char *sections[] = { "", "1", "1.2", "2.1.MIME", "HEADER.FIELDS (From To)",
                                      "1.HEADER.FIELDS.NOT (Subject)", "TEXT", "2.TEXT", "1.1.1" };
    for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]); k++) {
        struct mail_section s;
        struct mail_pieces pc = { 0 };
        if (mail_section_parse(sections[k], strlen(sections[k]), &s, &err) == 0 &&
            mail_view_section(v, &s, &pc, &err) == 0) {
            for (size_t j = 0; j < pc.count; j++) {
                if (pc.v[j].literal == NULL && pc.v[j].offset + pc.v[j].size > size)
                    abort();
            }
            mail_pieces_slice(&pc, 3, 10);
        }
        mail_pieces_free(&pc);
        mail_section_free(&s);
    }
    /* the section parser on the raw input too */
    struct mail_section s;
    (void)mail_section_parse((const char *)data, size < 200 ? size : 200, &s, &err);
    mail_section_free(&s);
    mail_view_free(&v);
    mail_buf_free(&a);
    mail_buf_free(&b);
    mail_buf_free(&out);
    return 0;
}
