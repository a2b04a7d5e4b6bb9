/* test_list.c -- lib/list.h (cmocka): insertion at both ends, order of
 * iteration, removal of the first, middle and last element, removal of an
 * unlinked or never-linked node, and removal while iterating. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "list.h"

#include <string.h>

typedef struct item {
    int v;
    list_node link;
} item;

/* Writes the values of h in order into out (at most n); returns the count. */
static size_t values(const list_node *h, int *out, size_t n)
{
    size_t k = 0;
    const list_node *p;
    list_foreach(p, h) {
        if (k < n)
            out[k] = list_entry(p, const item, link)->v;
        k++;
    }
    return k;
}

static void expect(const list_node *h, const int *want, size_t n)
{
    int got[16] = { 0 };
    assert_int_equal(values(h, got, 16), n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("element %zu is %d, want %d", i, got[i], want[i]);
    /* and backwards through prev */
    size_t i = n;
    for (const list_node *p = h->prev; p != h; p = p->prev)
        assert_int_equal(list_entry(p, const item, link)->v, want[--i]);
    assert_int_equal(i, 0);
}

static void test_insert_remove(void **state)
{
    (void)state;
    list_node h = LIST_HEAD_INIT(h);
    item it[5];
    memset(it, 0, sizeof(it));
    assert_true(list_empty(&h));
    assert_null(list_first(&h));
    assert_null(list_last(&h));
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        assert_false(list_linked(&it[i].link)); /* zeroed: never linked */
    }
    list_insert_tail(&h, &it[1].link);
    list_insert_tail(&h, &it[2].link);
    list_insert_head(&h, &it[0].link);
    list_insert_tail(&h, &it[3].link);
    list_insert_tail(&h, &it[4].link);
    expect(&h, (const int[]){ 0, 1, 2, 3, 4 }, 5);
    assert_ptr_equal(list_first(&h), &it[0].link);
    assert_ptr_equal(list_last(&h), &it[4].link);
    assert_ptr_equal(list_next(&h, &it[3].link), &it[4].link);
    assert_null(list_next(&h, &it[4].link));
    assert_true(list_linked(&it[2].link));
    list_remove(&it[2].link); /* middle */
    assert_false(list_linked(&it[2].link));
    list_remove(&it[2].link); /* again: no-op */
    expect(&h, (const int[]){ 0, 1, 3, 4 }, 4);
    list_remove(&it[0].link); /* first */
    list_remove(&it[4].link); /* last */
    expect(&h, (const int[]){ 1, 3 }, 2);
    item never = { 9, { NULL, NULL } };
    list_remove(&never.link);
    expect(&h, (const int[]){ 1, 3 }, 2);
    list_remove(&it[1].link);
    list_remove(&it[3].link);
    assert_true(list_empty(&h));
    expect(&h, NULL, 0);
    list_insert_head(&h, &it[2].link); /* a removed node can go back */
    expect(&h, (const int[]){ 2 }, 1);
}

static void test_foreach_safe(void **state)
{
    (void)state;
    list_node h;
    list_init(&h);
    item it[8];
    memset(it, 0, sizeof(it));
    for (int i = 0; i < 8; i++) {
        it[i].v = i;
        list_insert_tail(&h, &it[i].link);
    }
    list_node *p, *tmp;
    int seen = 0;
    list_foreach_safe(p, tmp, &h) {
        item *x = list_entry(p, item, link);
        seen++;
        if (x->v % 2 == 0) {
            list_remove(p);
            memset(p, 0xa5, sizeof(*p)); /* as if freed: must not be read again */
        }
    }
    assert_int_equal(seen, 8);
    expect(&h, (const int[]){ 1, 3, 5, 7 }, 4);
    list_foreach_safe(p, tmp, &h) list_remove(p);
    assert_true(list_empty(&h));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_remove),
        cmocka_unit_test(test_foreach_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
